// TensorBoard event files: <log_dir>/events.out.tfevents.<10-digit secs>.<host>,
// a TFRecord-framed stream of tensorflow.Event protos, the first one carrying
// file_version "brain.Event:2" (tensorflow/core/util/events_writer.cc).
//
// Scalars are written as TF1's tf.summary.scalar does, Summary.Value{tag,
// simple_value}, which every TensorBoard reads (its data_compat layer turns
// them into "scalars" plugin tensors), or, with ScalarForm::Tensor, in TF2's
// form: metadata{plugin_data{"scalars"}, data_class SCALAR} and a DT_FLOAT
// scalar tensor in tensor_content.
//
// Protos (tensorboard/compat/proto/event.proto, summary.proto):
//   Event{wall_time=1 double, step=2 int64, file_version=3, summary=5,
//         session_log=7 {status=1 (START=1), checkpoint_path=2, msg=3},
//         source_metadata=10 {writer=1}}
//   Summary{value=1 {tag=1, simple_value=2 float, tensor=8, metadata=9}}
//
// Local files are appended to and fsynced on flush(). Remote (gs://) files
// cannot be appended to: the whole file is written again on each flush, as
// TensorFlow's GCS file system does on Sync.
#pragma once

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <cumulus/core/error.hpp>
#include <cumulus/data/tfrecord.hpp>
#include <cumulus/io/file.hpp>
#include <cumulus/io/protobuf.hpp>
#include <cumulus/io/fs.hpp>

namespace cumulus::io {

inline constexpr const char* kEventFileVersion = "brain.Event:2";

enum class ScalarForm { SimpleValue, Tensor };

namespace detail {

inline void put_message(pb::Writer& w, std::uint32_t field, const std::vector<std::uint8_t>& m) {
    w.bytes_field(field, m.data(), m.size());
}

inline void make_event_dir(const std::string& dir) {
    CUMULUS_CHECK(!dir.empty(), "TensorBoard event writer: empty log directory");
    fs::make_dirs(dir);
}

inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace detail

// One Summary.Value holding a scalar.
inline std::vector<std::uint8_t> encode_scalar_value(const std::string& tag, float value,
                                                     ScalarForm form = ScalarForm::SimpleValue) {
    std::vector<std::uint8_t> v;
    pb::Writer w(v);
    w.string_field(1, tag);
    if (form == ScalarForm::SimpleValue) {
        w.float_field(2, value);
        return v;
    }
    std::vector<std::uint8_t> plugin, meta, tensor;
    pb::Writer pw(plugin);
    pw.string_field(1, "scalars");
    pb::Writer mw(meta);
    detail::put_message(mw, 1, plugin);
    mw.varint_field(4, 1);  // DATA_CLASS_SCALAR
    pb::Writer tw(tensor);
    tw.varint_field(1, 1);  // DT_FLOAT
    tw.len(2, 0);           // shape: scalar
    std::uint8_t le[4];
    std::uint32_t bits;
    std::memcpy(&bits, &value, 4);
    for (int i = 0; i < 4; ++i) le[i] = static_cast<std::uint8_t>(bits >> (8 * i));
    tw.bytes_field(4, le, 4);  // tensor_content, as TF's SummaryFileWriter
    detail::put_message(w, 9, meta);
    detail::put_message(w, 8, tensor);
    return v;
}

// Event{wall_time, file_version, source_metadata{writer}}: the first record of a file.
inline std::vector<std::uint8_t> encode_file_version_event(double wall_time, const std::string& writer = "") {
    std::vector<std::uint8_t> e;
    pb::Writer w(e);
    w.double_field(1, wall_time);
    w.string_field(3, kEventFileVersion);
    if (!writer.empty()) {
        std::vector<std::uint8_t> sm;
        pb::Writer(sm).string_field(1, writer);
        detail::put_message(w, 10, sm);
    }
    return e;
}

// Event{wall_time, step, summary{value...}} with the given (tag, value) scalars.
inline std::vector<std::uint8_t> encode_scalars_event(double wall_time, std::int64_t step,
                                                      const std::vector<std::pair<std::string, double>>& scalars,
                                                      ScalarForm form = ScalarForm::SimpleValue) {
    std::vector<std::uint8_t> summary;
    pb::Writer sw(summary);
    for (const auto& [tag, value] : scalars) {
        CUMULUS_CHECK(!tag.empty(), "TensorBoard scalar: empty tag");
        detail::put_message(sw, 1, encode_scalar_value(tag, static_cast<float>(value), form));
    }
    std::vector<std::uint8_t> e;
    pb::Writer w(e);
    w.double_field(1, wall_time);
    if (step != 0) w.int64_field(2, step);  // proto3: the default is not written
    detail::put_message(w, 5, summary);
    return e;
}

// Event{wall_time, step, session_log{status START}}: on every START after
// the first in a run, TensorBoard drops the events seen so far at steps >=
// `step` (a restarted job's orphaned steps).
inline std::vector<std::uint8_t> encode_session_start_event(double wall_time, std::int64_t step) {
    std::vector<std::uint8_t> sl;
    pb::Writer(sl).varint_field(1, 1);  // START
    std::vector<std::uint8_t> e;
    pb::Writer w(e);
    w.double_field(1, wall_time);
    if (step != 0) w.int64_field(2, step);
    detail::put_message(w, 7, sl);
    return e;
}

// What decode_event reads back: enough for tests and tools.
struct DecodedEvent {
    double wall_time = 0.0;
    std::int64_t step = 0;
    std::string file_version;
    int session_status = 0;  // SessionLog.status, 0 when absent
    std::vector<std::pair<std::string, float>> scalars;  // simple_value or scalar float tensors
};

// Decodes one Event record. Unknown fields and non-scalar values are skipped.
inline DecodedEvent decode_event(const std::uint8_t* p, std::size_t n, const std::string& context = "Event") {
    DecodedEvent ev;
    pb::Reader r(p, n, context);
    pb::Field f;
    while (r.next(f)) {
        if (f.number == 1 && f.type == pb::WireType::Fixed64) {
            ev.wall_time = r.read_double();
        } else if (f.number == 2 && f.type == pb::WireType::Varint) {
            ev.step = r.read_int64();
        } else if (f.number == 3 && f.type == pb::WireType::Len) {
            ev.file_version = std::string(r.read_bytes().view());
        } else if (f.number == 7 && f.type == pb::WireType::Len) {
            auto b = r.read_bytes();
            pb::Reader s(b.data, b.size, context + ": session_log", b.offset);
            pb::Field g;
            while (s.next(g)) {
                if (g.number == 1 && g.type == pb::WireType::Varint)
                    ev.session_status = static_cast<int>(s.read_varint());
                else
                    s.skip(g);
            }
        } else if (f.number == 5 && f.type == pb::WireType::Len) {
            auto b = r.read_bytes();
            pb::Reader s(b.data, b.size, context + ": summary", b.offset);
            pb::Field g;
            while (s.next(g)) {
                if (g.number != 1 || g.type != pb::WireType::Len) {
                    s.skip(g);
                    continue;
                }
                auto vb = s.read_bytes();
                pb::Reader v(vb.data, vb.size, context + ": summary value", vb.offset);
                std::string tag;
                std::optional<float> value;
                pb::Field h;
                while (v.next(h)) {
                    if (h.number == 1 && h.type == pb::WireType::Len) {
                        tag = std::string(v.read_bytes().view());
                    } else if (h.number == 2 && h.type == pb::WireType::Fixed32) {
                        value = v.read_float();
                    } else if (h.number == 8 && h.type == pb::WireType::Len) {
                        auto tb = v.read_bytes();
                        pb::Reader t(tb.data, tb.size, context + ": tensor", tb.offset);
                        pb::Field k;
                        std::uint64_t dtype = 0;
                        std::optional<float> tv;
                        while (t.next(k)) {
                            if (k.number == 1 && k.type == pb::WireType::Varint) {
                                dtype = t.read_varint();
                            } else if (k.number == 4 && k.type == pb::WireType::Len) {
                                auto c = t.read_bytes();
                                if (c.size == 4) {
                                    float x;
                                    std::memcpy(&x, c.data, 4);  // little-endian hosts only
                                    tv = x;
                                }
                            } else if (k.number == 5 && k.type == pb::WireType::Len) {
                                auto c = t.read_bytes();
                                if (c.size == 4) {
                                    pb::Reader fr(c.data, 4, context + ": float_val", c.offset);
                                    tv = fr.read_float();
                                }
                            } else if (k.number == 5 && k.type == pb::WireType::Fixed32) {
                                tv = t.read_float();
                            } else {
                                t.skip(k);
                            }
                        }
                        if (dtype == 1 && tv) value = tv;
                    } else {
                        v.skip(h);
                    }
                }
                if (value) ev.scalars.emplace_back(tag, *value);
            }
        } else {
            r.skip(f);
        }
    }
    return ev;
}

// Every event of an event file, in order (CRCs checked by the TFRecord reader).
inline std::vector<DecodedEvent> read_event_file(const std::string& path) {
    std::vector<DecodedEvent> out;
    const auto records = data::read_tfrecords(path);
    for (std::size_t i = 0; i < records.size(); ++i)
        out.push_back(decode_event(records[i].data(), records[i].size(),
                                   "'" + path + "': record " + std::to_string(i) + ": Event"));
    return out;
}

inline std::string local_hostname() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
    return buf;
}

struct EventWriterOptions {
    double flush_secs = 120.0;   // tf.summary.create_file_writer's flush_millis
    std::size_t max_queue = 10;  // pending events that force a flush (local files only)
    ScalarForm scalar_form = ScalarForm::SimpleValue;
    std::string filename_suffix;  // appended to the name, as TF's ".v2"
    std::string writer_name = "cumulus";
};

// Writes one event file under `log_dir` (created). The file_version event is
// written and flushed at once, as TensorFlow's EventsWriter does.
class EventWriter {
public:
    explicit EventWriter(const std::string& log_dir, EventWriterOptions opt = {})
        : opt_(std::move(opt)), remote_(!is_local_path(log_dir)) {
        detail::make_event_dir(log_dir);
        const double now = detail::now_seconds();
        char secs[32];
        std::snprintf(secs, sizeof secs, "%010lld", static_cast<long long>(now));
        std::string base = log_dir;
        if (base.back() != '/') base += '/';
        base += std::string("events.out.tfevents.") + secs + "." + local_hostname();
        path_ = base + opt_.filename_suffix;
        // A second writer in the same directory and second (a quick restart)
        // must not truncate or overwrite the first one's file.
        for (int k = 1; fs::exists(path_); ++k) path_ = base + "." + std::to_string(k) + opt_.filename_suffix;
        if (!remote_) {
            do {
                fd_ = ::open(local_path_of(path_).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0666);
            } while (fd_ < 0 && errno == EINTR);
            if (fd_ < 0) CUMULUS_FAIL("cannot create event file '", path_, "': ", std::strerror(errno));
        }
        last_flush_ = std::chrono::steady_clock::now();
        add_event(encode_file_version_event(now, opt_.writer_name));
        flush();
    }
    EventWriter(const EventWriter&) = delete;
    EventWriter& operator=(const EventWriter&) = delete;
    ~EventWriter() {
        try {
            close();
        } catch (...) {
            // A destructor must not throw; close() explicitly to see the error.
        }
    }

    const std::string& path() const { return path_; }

    // Appends a serialized Event.
    void add_event(const std::vector<std::uint8_t>& event) {
        CUMULUS_CHECK(!closed_, "'", path_, "': event written after close");
        const auto framed = data::frame_tfrecord(event.data(), event.size());
        pending_.insert(pending_.end(), framed.begin(), framed.end());
        ++pending_events_;
        const bool due = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_flush_).count() >=
                         opt_.flush_secs;
        if (due || (!remote_ && pending_events_ >= opt_.max_queue)) flush();
    }

    void add_scalar(const std::string& tag, double value, std::int64_t step) { add_scalars(step, {{tag, value}}); }
    // Several scalars of one step in one event.
    void add_scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
        if (scalars.empty()) return;
        add_event(encode_scalars_event(detail::now_seconds(), step, scalars, opt_.scalar_form));
    }
    void add_session_start(std::int64_t step) { add_event(encode_session_start_event(detail::now_seconds(), step)); }

    // Makes every event so far durable (fsync locally, a full rewrite remotely).
    void flush() {
        if (closed_) return;
        last_flush_ = std::chrono::steady_clock::now();
        if (remote_) {
            // Moved into the content first: a failed upload is retried by the
            // next flush with the same content, not with the events twice.
            if (!pending_.empty()) {
                content_.insert(content_.end(), pending_.begin(), pending_.end());
                pending_.clear();
                pending_events_ = 0;
                unsent_ = true;
            }
            if (unsent_) {
                write_file(path_, content_);
                unsent_ = false;
            }
            return;
        }
        if (pending_.empty()) return;
        {
            std::size_t done = 0;
            while (done < pending_.size()) {
                const ssize_t w = ::write(fd_, pending_.data() + done, pending_.size() - done);
                if (w < 0 && errno == EINTR) continue;
                if (w < 0) CUMULUS_FAIL("writing event file '", path_, "' failed: ", std::strerror(errno));
                done += static_cast<std::size_t>(w);
            }
            if (::fsync(fd_) != 0) CUMULUS_FAIL("syncing event file '", path_, "' failed: ", std::strerror(errno));
        }
        pending_.clear();
        pending_events_ = 0;
    }

    void close() {
        if (closed_) return;
        flush();
        closed_ = true;
        if (fd_ >= 0) {
            const int fd = fd_;
            fd_ = -1;
            if (::close(fd) != 0) CUMULUS_FAIL("closing event file '", path_, "' failed: ", std::strerror(errno));
        }
    }

private:
    EventWriterOptions opt_;
    bool remote_;
    std::string path_;
    int fd_ = -1;
    std::vector<std::uint8_t> pending_;  // framed records not yet written
    std::vector<std::uint8_t> content_;  // the whole file, for remote rewrites
    bool unsent_ = false;                // content_ holds events the object lacks
    std::size_t pending_events_ = 0;
    std::chrono::steady_clock::time_point last_flush_;
    bool closed_ = false;
};

}  // namespace cumulus::io
