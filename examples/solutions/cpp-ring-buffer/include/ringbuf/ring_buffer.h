#pragma once
// A fixed-capacity FIFO ring buffer. push() on a full buffer overwrites the
// oldest element. T must be default-constructible and copyable.
// Not thread-safe: guard shared instances with a mutex.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace ringbuf {

template <typename T>
class RingBuffer {
 public:
  // Throws std::invalid_argument when capacity is 0.
  explicit RingBuffer(std::size_t capacity) : data_(capacity) {
    if (capacity == 0) throw std::invalid_argument("RingBuffer capacity must be positive");
  }

  std::size_t capacity() const { return data_.size(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool full() const { return size_ == data_.size(); }

  // Appends value. Returns false when the buffer was full and the oldest
  // element was overwritten.
  bool push(const T& value) {
    data_[(head_ + size_) % data_.size()] = value;
    if (full()) {
      head_ = (head_ + 1) % data_.size();
      return false;
    }
    ++size_;
    return true;
  }

  // Removes and returns the oldest element; nullopt when empty.
  std::optional<T> pop() {
    if (empty()) return std::nullopt;
    T value = std::move(data_[head_]);
    head_ = (head_ + 1) % data_.size();
    --size_;
    return value;
  }

  // The i-th element, 0 = oldest. Throws std::out_of_range when i >= size().
  const T& at(std::size_t i) const {
    if (i >= size_) throw std::out_of_range("RingBuffer::at: index out of range");
    return data_[(head_ + i) % data_.size()];
  }

  void clear() {
    head_ = 0;
    size_ = 0;
  }

 private:
  std::vector<T> data_;
  std::size_t head_ = 0;  // index of the oldest element
  std::size_t size_ = 0;
};

}  // namespace ringbuf
