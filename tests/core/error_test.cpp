#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include <cumulus/core/config.hpp>
#include <cumulus/core/error.hpp>
#include <cumulus/core/op_types.hpp>

namespace {

std::string message_of(void (*f)()) {
    try {
        f();
    } catch (const cumulus::Error& e) {
        return e.what();
    }
    return "<no exception>";
}

}  // namespace

TEST_CASE("CUMULUS_CHECK: the message holds the streamed text, the expression and the place") {
    std::string msg = message_of([] {
        int n = 3;
        CUMULUS_CHECK(n == 4, "layer ", "dense_1", ": expected ", 4, " units, got ", n, " (", 2.5, ")");
    });
    CHECK(msg.find("layer dense_1: expected 4 units, got 3 (2.5)") == 0);  // the user's text comes first
    CHECK(msg.find("n == 4") != std::string::npos);
    CHECK(msg.find("error_test.cpp") != std::string::npos);
}

TEST_CASE("CUMULUS_CHECK without a message names the failed condition") {
    std::string msg = message_of([] { CUMULUS_CHECK(1 + 1 == 3); });
    CHECK(msg.find("check failed: 1 + 1 == 3") == 0);
}

TEST_CASE("CUMULUS_CHECK: no throw when the condition holds; each part evaluated as needed") {
    int cond_evals = 0, msg_evals = 0;
    auto cond = [&](bool v) {
        ++cond_evals;
        return v;
    };
    auto text = [&] {
        ++msg_evals;
        return std::string("expensive");
    };
    CHECK_NOTHROW(CUMULUS_CHECK(cond(true), text()));
    CHECK(cond_evals == 1);
    CHECK(msg_evals == 0);  // the message is built only on failure
    CHECK_THROWS_WITH_AS(CUMULUS_CHECK(cond(false), text()), doctest::Contains("expensive"), cumulus::Error);
    CHECK(cond_evals == 2);
    CHECK(msg_evals == 1);

    // It is one statement: safe in an unbraced if/else.
    bool reached_else = false;
    if (cond(false))
        CUMULUS_CHECK(false, "never");
    else
        reached_else = true;
    CHECK(reached_else);
}

TEST_CASE("CUMULUS_FAIL throws exactly the streamed text; Error is a runtime_error") {
    CHECK_THROWS_WITH_AS(CUMULUS_FAIL("file ", "x.idx", " at byte ", 16, ": bad magic"),
                         "file x.idx at byte 16: bad magic", cumulus::Error);
    CHECK_THROWS_AS(CUMULUS_FAIL("any"), std::runtime_error);
    cumulus::Error e("plain");
    CHECK(std::string(e.what()) == "plain");
}

TEST_CASE("config and op types of a CPU build") {
    CHECK_FALSE(cumulus::built_with_cuda);  // tests/core is compiled by the host compiler only
    CHECK(static_cast<bool>(cumulus::Transpose::Yes));
    CHECK_FALSE(static_cast<bool>(cumulus::Transpose::No));
    CHECK(cumulus::Epilogue::None != cumulus::Epilogue::BiasRelu);
}
