// cxxthreads: a multi-threaded C++ program on the standard library's containers.
//
//   cxxthreads ITEMS [THREADS=4] [HOPS=3] [KEYS=2048] [SEED=42]
//
// THREADS std::threads in a ring, each with an inbox (a std::deque behind a std::mutex and a
// std::condition_variable). Every thread makes ITEMS messages: a std::shared_ptr to a record
// with a std::string key, a std::string payload of 8..200 characters and a std::vector of
// 1..64 numbers, and posts each to the next thread's inbox. A thread that takes a message from
// its inbox checks it, keeps it in its own std::unordered_map under its key (dropping the
// message that key held before: often the last owner, so the record is freed in a thread other
// than the one that allocated it) and passes it on to the next thread until it has made HOPS
// hops. Keys repeat (KEYS per thread), so the maps stay bounded and keep replacing. A thread
// that has made 64 messages more than it has been sent waits for its inbox (it cannot deadlock:
// the thread that has made the fewest never waits), so the queues stay short too.
// Every message is seen HOPS times, by threads in a fixed order, and each inbox keeps the order
// of each sender, so what every map holds at the end does not depend on the scheduling: the
// checksum (a sum over every message seen and every map entry left) is the same in every run.
// Exit status 0 on success, 2 on bad arguments, 1 if a message lost its contents.
#include "bench.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

struct Record {
  std::string key;
  std::string payload;
  std::vector<uint64_t> values;
  uint64_t origin;
  uint64_t serial;
};

using RecordPtr = std::shared_ptr<const Record>;

struct Envelope {
  RecordPtr rec;
  unsigned hops_left;
};

struct Inbox {
  std::mutex lock;
  std::condition_variable ready;
  std::deque<Envelope> queue;

  void post(Envelope e) {
    {
      std::lock_guard<std::mutex> g(lock);
      queue.push_back(std::move(e));
    }
    ready.notify_one();
  }

  // Moves whatever is queued into out; waits for something when wait is set.
  void take_all(std::deque<Envelope>& out, bool wait) {
    std::unique_lock<std::mutex> g(lock);
    if (wait) ready.wait(g, [this] { return !queue.empty(); });
    while (!queue.empty()) {
      out.push_back(std::move(queue.front()));
      queue.pop_front();
    }
  }
};

constexpr uint64_t WINDOW = 64;
uint64_t n_items, n_hops, n_keys, base_seed;
unsigned n_threads;

char payload_char(uint64_t origin, uint64_t serial, size_t i) {
  return static_cast<char>('a' + (origin * 7 + serial * 13 + i) % 26);
}

uint64_t value_at(uint64_t origin, uint64_t serial, size_t i) {
  uint64_t s = base_seed ^ (origin << 40) ^ (serial << 8) ^ i;
  return bench_rnd(&s);
}

RecordPtr make_record(uint64_t origin, uint64_t serial, uint64_t* rs) {
  auto r = std::make_shared<Record>();
  r->origin = origin;
  r->serial = serial;
  r->key = "thread-" + std::to_string(origin) + "/key-" + std::to_string(serial % n_keys);
  size_t plen = static_cast<size_t>(bench_range(rs, 8, 200));
  r->payload.reserve(16);  // grown by appends, as strings usually are
  for (size_t i = 0; i < plen; i++) r->payload += payload_char(origin, serial, i);
  size_t nv = static_cast<size_t>(bench_range(rs, 1, 64));
  for (size_t i = 0; i < nv; i++) r->values.push_back(value_at(origin, serial, i));
  return r;
}

// Checks a record against what its maker wrote; returns its digest, or 0 when it is damaged.
uint64_t digest(const Record& r) {
  std::string want = "thread-" + std::to_string(r.origin) + "/key-" +
                     std::to_string(r.serial % n_keys);
  if (r.key != want) return 0;
  uint64_t d = r.serial * 1000003 + r.origin + 1;
  for (size_t i = 0; i < r.payload.size(); i++) {
    if (r.payload[i] != payload_char(r.origin, r.serial, i)) return 0;
    d = d * 31 + static_cast<unsigned char>(r.payload[i]);
  }
  for (size_t i = 0; i < r.values.size(); i++) {
    if (r.values[i] != value_at(r.origin, r.serial, i)) return 0;
    d ^= r.values[i] + i;
  }
  return d == 0 ? 1 : d;
}

struct Worker {
  unsigned index = 0;
  uint64_t checksum = 0;
};

// A damaged message ends the program at once: the other threads would wait for it forever.
[[noreturn]] void damaged() {
  std::fprintf(stderr, "cxxthreads: a message lost its contents\n");
  std::_Exit(1);
}

void run(Worker& w, std::vector<Inbox>& inboxes) {
  Inbox& mine = inboxes[w.index];
  Inbox& next = inboxes[(w.index + 1) % n_threads];
  std::unordered_map<std::string, RecordPtr> kept;
  std::deque<Envelope> batch;
  uint64_t rs = base_seed * 0x9E3779B97F4A7C15ULL + w.index;
  uint64_t made = 0, seen = 0, want_seen = n_items * n_hops;
  while (made < n_items || seen < want_seen) {
    // a thread more than WINDOW messages ahead of what it has been sent waits for its inbox,
    // so that a thread the scheduler left behind is not buried under messages
    bool ahead = made * n_hops > seen + WINDOW * n_hops;
    if (made < n_items && !ahead) {
      next.post(Envelope{make_record(w.index, made, &rs), static_cast<unsigned>(n_hops)});
      made++;
    }
    // with nothing more to make, wait for the inbox rather than spin
    mine.take_all(batch, (made == n_items && seen < want_seen) || ahead);
    while (!batch.empty()) {
      Envelope e = std::move(batch.front());
      batch.pop_front();
      seen++;
      uint64_t d = digest(*e.rec);
      if (d == 0) damaged();
      w.checksum += d;
      kept[e.rec->key] = e.rec;  // the record this key held may be freed here
      if (--e.hops_left > 0) next.post(std::move(e));
    }
  }
  for (const auto& kv : kept) {
    uint64_t d = digest(*kv.second);
    if (d == 0 || kv.first != kv.second->key) damaged();
    w.checksum += d ^ kv.first.size();
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long long items = 0, threads = 4, hops = 3, keys = 2048, seed = 42;
  if (argc < 2 || !bench_arg(argc, argv, 1, &items) || !bench_arg(argc, argv, 2, &threads) ||
      !bench_arg(argc, argv, 3, &hops) || !bench_arg(argc, argv, 4, &keys) ||
      !bench_arg(argc, argv, 5, &seed) || threads < 1 || threads > 256 || hops < 1 ||
      keys < 1) {
    std::fprintf(stderr, "usage: %s ITEMS [THREADS=4] [HOPS=3] [KEYS=2048] [SEED=42]\n",
                 argv[0]);
    return 2;
  }
  n_items = items;
  n_threads = static_cast<unsigned>(threads);
  n_hops = hops;
  n_keys = keys;
  base_seed = seed;
  uint64_t checksum = 0;
  {
    std::vector<Inbox> inboxes(n_threads);
    std::vector<Worker> workers(n_threads);
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < n_threads; i++) {
      workers[i].index = i;
      pool.emplace_back(run, std::ref(workers[i]), std::ref(inboxes));
    }
    for (auto& t : pool) t.join();
    for (const auto& w : workers) checksum += w.checksum;
  }
  std::printf("cxxthreads items=%llu threads=%llu hops=%llu keys=%llu checksum=%llu malloc=%s\n",
              items, threads, hops, keys, static_cast<unsigned long long>(checksum),
              bench_malloc_provider());
  return 0;
}
