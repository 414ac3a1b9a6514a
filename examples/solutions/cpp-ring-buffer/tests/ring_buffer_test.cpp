#include "ringbuf/ring_buffer.h"

#include <cstdio>
#include <stdexcept>
#include <string>

static int failures = 0;

// Not assert(): Release builds define NDEBUG and would skip every check.
#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                                 \
    }                                                                             \
  } while (0)

int main() {
  ringbuf::RingBuffer<int> rb(3);
  CHECK(rb.empty() && rb.capacity() == 3);
  CHECK(!rb.pop().has_value());

  CHECK(rb.push(1) && rb.push(2) && rb.push(3));
  CHECK(rb.full() && rb.size() == 3);
  CHECK(!rb.push(4));  // overwrites 1
  CHECK(rb.at(0) == 2 && rb.at(2) == 4);
  CHECK(rb.pop() == 2 && rb.pop() == 3 && rb.pop() == 4);
  CHECK(rb.empty());

  for (int i = 0; i < 100; ++i) rb.push(i);  // wraps around many times
  CHECK(rb.size() == 3 && rb.at(0) == 97 && rb.at(2) == 99);
  rb.clear();
  CHECK(rb.empty() && !rb.pop().has_value());

  bool threw = false;
  try {
    (void)rb.at(0);
  } catch (const std::out_of_range&) {
    threw = true;
  }
  CHECK(threw);
  threw = false;
  try {
    ringbuf::RingBuffer<int> bad(0);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);

  ringbuf::RingBuffer<std::string> names(2);
  names.push("a");
  names.push("b");
  names.push("c");
  CHECK(names.pop() == std::string("b") && names.pop() == std::string("c"));

  if (failures == 0) std::puts("all ring buffer checks passed");
  return failures == 0 ? 0 : 1;
}
