/* Stand-in for <pthread.h>, compile checks only: see README.md. The object types are opaque
 * here (only their addresses are passed); their sizes are not Haiku's. */
#pragma once
#include <signal.h>
#include <time.h>
typedef struct { long opaque[4]; } pthread_mutex_t;
typedef struct { long opaque[4]; } pthread_cond_t;
typedef struct { long opaque[4]; } pthread_attr_t;
typedef struct pthread_thread* pthread_t;
typedef int pthread_key_t;
#define PTHREAD_MUTEX_INITIALIZER {{0}}
#define PTHREAD_COND_INITIALIZER {{0}}
#define PTHREAD_CREATE_DETACHED 1

int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*start)(void*),
                   void* arg);
int pthread_attr_init(pthread_attr_t* attr);
int pthread_attr_destroy(pthread_attr_t* attr);
int pthread_attr_setdetachstate(pthread_attr_t* attr, int state);
int pthread_sigmask(int how, const sigset_t* set, sigset_t* old);
int pthread_key_create(pthread_key_t* key, void (*destructor)(void*));
int pthread_setspecific(pthread_key_t key, const void* value);
int pthread_mutex_lock(pthread_mutex_t* mutex);
int pthread_mutex_unlock(pthread_mutex_t* mutex);
int pthread_cond_wait(pthread_cond_t* cond, pthread_mutex_t* mutex);
int pthread_cond_timedwait(pthread_cond_t* cond, pthread_mutex_t* mutex,
                           const struct timespec* deadline);
int pthread_cond_broadcast(pthread_cond_t* cond);
int pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
