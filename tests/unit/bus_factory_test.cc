#include <gtest/gtest.h>

#include "af/bus/bus.h"

namespace af {
namespace {

TEST(BusFactoryTest, EmptyUrlOpensTheInProcessBus) {
  auto bus = Bus::Open(BusOptions{});
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  EXPECT_EQ((*bus)->Describe(), "in-process");
  EXPECT_TRUE((*bus)->Check().ok());
}

TEST(BusFactoryTest, UnreachableRedisIsUnavailableAndNamesHostNotPassword) {
  BusOptions o;
  o.url = "redis://:secret@127.0.0.1:1/0";  // port 1: nothing listens there
  auto bus = Bus::Open(o);
  ASSERT_FALSE(bus.ok());
  EXPECT_EQ(bus.status().code(), Code::kUnavailable);
  EXPECT_NE(bus.status().message().find("127.0.0.1:1"), std::string::npos)
      << bus.status().ToString();
  EXPECT_NE(bus.status().hint().find("REDIS_URL"), std::string::npos);
  EXPECT_EQ(bus.status().ToString().find("secret"), std::string::npos);
}

TEST(BusFactoryTest, MalformedRedisUrlIsInvalidArgumentWithoutEchoingIt) {
  BusOptions o;
  o.url = "redis://:secret@localhost:notaport";
  auto bus = Bus::Open(o);
  EXPECT_EQ(bus.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bus.status().ToString().find("secret"), std::string::npos);
  o.url = "redis://localhost:6379/db";
  EXPECT_EQ(Bus::Open(o).status().code(), Code::kInvalidArgument);
}

TEST(BusFactoryTest, RedissIsRefusedWithAHint) {
  BusOptions o;
  o.url = "rediss://:secret@localhost:6380";
  auto bus = Bus::Open(o);
  EXPECT_EQ(bus.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bus.status().message().find("TLS"), std::string::npos);
  EXPECT_EQ(bus.status().ToString().find("secret"), std::string::npos);
}

TEST(BusFactoryTest, UnknownSchemeIsInvalidArgument) {
  BusOptions o;
  o.url = "amqp://localhost";
  EXPECT_EQ(Bus::Open(o).status().code(), Code::kInvalidArgument);
  o.url = "localhost:6379";
  EXPECT_EQ(Bus::Open(o).status().code(), Code::kInvalidArgument);
}

TEST(BusFactoryTest, BadOptionsAreInvalidArgument) {
  BusOptions o;
  o.ack_timeout = std::chrono::milliseconds(0);
  EXPECT_EQ(Bus::Open(o).status().code(), Code::kInvalidArgument);
  o = BusOptions{};
  o.max_attempts = 0;
  EXPECT_EQ(Bus::Open(o).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace af
