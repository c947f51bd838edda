// Starts tests/io/gcs_fixture.py (fake-gcs-server + a fault-injecting proxy
// on loopback) for the gs:// tests, and talks to the proxy's control API.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cumulus/io/http.hpp>

#include "../test_util.hpp"

extern char** environ;

namespace gcs_test {

// The venv's python (tools/setup-venv); CUMULUS_GCS_TEST_PYTHON overrides it.
inline std::string python() {
    const char* p = std::getenv("CUMULUS_GCS_TEST_PYTHON");
    return p && *p ? std::string(p) : std::string(CUMULUS_SOURCE_DIR) + "/.venv/bin/python";
}
inline std::string fixture_script() { return std::string(CUMULUS_SOURCE_DIR) + "/tests/io/gcs_fixture.py"; }

// Missing emulator: skip (exit 77) with the reason, except in CI, where it fails.
[[noreturn]] inline void skip_or_fail(const std::string& why) { test_util::skip_interop(why); }

struct Fixture {
    std::string emulator, proxy;
    pid_t pid = -1;
    int to_child = -1;

    Fixture() {
        if (::access(python().c_str(), X_OK) != 0) skip_or_fail("no " + python());
        int in[2], out[2];
        if (::pipe(in) != 0 || ::pipe(out) != 0) skip_or_fail("pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addclose(&fa, in[1]);
        posix_spawn_file_actions_addclose(&fa, out[0]);
        std::string py = python(), script = fixture_script();
        std::vector<char*> argv = {py.data(), script.data(), const_cast<char*>("serve"), const_cast<char*>("--buckets"),
                                   const_cast<char*>("cumulus-test,cumulus-other"), nullptr};
        const int rc = posix_spawn(&pid, py.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(in[0]);
        ::close(out[1]);
        to_child = in[1];
        ::fcntl(to_child, F_SETFD, FD_CLOEXEC);
        if (rc != 0) skip_or_fail("cannot run " + py);
        std::string line;
        char c;
        while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
        ::close(out[0]);
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_object() || !j.contains("proxy")) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            pid = -1;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 77) skip_or_fail(line);
            std::cout << "FAILED: the GCS fixture did not start: " << line << std::endl;
            std::exit(1);
        }
        emulator = j["emulator"].get<std::string>();
        proxy = j["proxy"].get<std::string>();
    }
    Fixture(const Fixture&) = delete;
    Fixture& operator=(const Fixture&) = delete;
    ~Fixture() {
        if (pid > 0) {
            ::close(to_child);
            ::kill(pid, SIGTERM);
            int status;
            ::waitpid(pid, &status, 0);
        }
    }

    nlohmann::json control(const std::string& what, const std::string& body = "") {
        cumulus::io::http::Request r;
        r.method = body.empty() && what == "stats" ? "GET" : "POST";
        r.url = proxy + "/_proxy/" + what;
        if (r.method == "POST") r.set_body(body.data(), body.size());
        auto resp = cumulus::io::http::perform(r);
        return nlohmann::json::parse(resp.body);
    }
    void faults(const nlohmann::json& rules) { control("faults", rules.dump()); }
    void reset() { control("reset", "{}"); }
    nlohmann::json stats() { return control("stats"); }

    // google-cloud-storage reading (peer-read) or writing (peer-write) dir/NAME for each name.
    int peer(const std::string& cmd, const std::string& dir, const std::vector<std::string>& names) {
        std::string line = python() + " " + fixture_script() + " " + cmd + " " + emulator + " cumulus-test " + dir;
        for (const auto& n : names) line += " '" + n + "'";
        return std::system(line.c_str());
    }
};

}  // namespace gcs_test
