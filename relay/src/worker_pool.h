// A fixed set of threads for blocking work (Argon2id, SQLite writes).
// post() may be called from any thread. Jobs must not touch loop-owned state;
// they hand results back through the loop's inbox.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mesh::relay {

class WorkerPool {
 public:
  explicit WorkerPool(unsigned threads);
  // Finishes the jobs already queued, then joins.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void post(std::function<void()> job);
  [[nodiscard]] std::size_t queued() const;
  // Waits until every job posted so far has run (used at shutdown).
  void drain();

 private:
  void runWorker();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> jobs_;  // guarded by mutex_
  std::size_t running_ = 0;                 // guarded by mutex_
  bool stopping_ = false;                   // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace mesh::relay
