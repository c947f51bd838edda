// libFuzzer target for the pickle reader (and the writer behind it).
//
// The input goes to pickle::loads as it is, so real pickles (plain or
// gzipped) are seeds. Limits are small, so that no input may allocate much.
// Anything may throw cumulus::Error; whatever loads must be self-consistent:
// its repr and array conversions work, and dumps + loads gives it back
// unchanged at protocols 2, 3 and 4.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <cumulus/data/pickle.hpp>

namespace pk = cumulus::data::pickle;

namespace {

void check_arrays(const pk::Value& v) {
    using T = pk::Value::Type;
    switch (v.type()) {
        case T::tuple: case T::list: case T::set: case T::frozenset:
            for (const auto& x : v.type() == T::tuple ? v.as_tuple() : v.type() == T::list ? v.as_list() : v.as_set())
                check_arrays(x);
            break;
        case T::dict:
            for (const auto& [k, x] : v.as_dict()) {
                check_arrays(k);
                check_arrays(x);
            }
            break;
        case T::array: {
            const pk::Array& a = v.as_array();
            a.validate();
            if (a.shape.size() <= 6 && a.numel() <= (1 << 16)) {
                (void)a.to_tensor<double>();
                (void)a.to_tensor<cumulus::half>();
                try {
                    (void)a.to_tensor<std::int64_t>();  // may be inexact: an Error
                } catch (const cumulus::Error&) {
                }
            }
            break;
        }
        default: break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    pk::LoadOptions opt;
    opt.max_alloc_bytes = std::size_t{64} << 20;
    opt.encoding = size > 0 && data[size - 1] % 3 == 1 ? pk::Encoding::latin1
                   : size > 0 && data[size - 1] % 3 == 2 ? pk::Encoding::bytes
                                                         : pk::Encoding::ascii;
    pk::Value v;
    try {
        v = pk::loads(data, size, "fuzz.pkl", opt);
    } catch (const cumulus::Error&) {
        return 0;
    }
    (void)v.repr(1000);
    check_arrays(v);
    for (int proto : {2, 3, 4}) {
        std::vector<std::uint8_t> b = pk::dumps(v, proto);
        pk::Value again = pk::loads(b, "again.pkl", opt);
        if (!(again == v)) std::abort();
    }
    return 0;
}
