/* The Linux backend's reader of cgroup limits (cgroup.c), for the backend's container_limits
 * and container_usage (see backend.h). Private to src/backend/linux/. */
#pragma once
#ifndef LM_BACKEND_LINUX_CGROUP_H
#define LM_BACKEND_LINUX_CGROUP_H

#include "../backend.h"

/* `root` stands for "/" ("" for the real one). */
bool lm_linux_container_limits(const char* root, lm_container_t* out);
size_t lm_linux_container_usage(void);

#endif
