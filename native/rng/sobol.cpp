// Sobol direction numbers: primitive polynomials by search, then the Sobol recurrence (see sobol.h).
#include "rng/sobol.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace of {
namespace {

// Polynomial over GF(2) as bits: bit i = coefficient of x^i. Multiply mod p, for degree <= 31.
uint64_t mulmod(uint64_t a, uint64_t b, uint64_t p, int deg) {
    uint64_t r = 0;
    while (b) {
        if (b & 1) r ^= a;
        b >>= 1;
        a <<= 1;
        if (a >> deg & 1) a ^= p;
    }
    return r;
}

uint64_t powmod(uint64_t e, uint64_t p, int deg) {  // x^e mod p
    uint64_t r = 1, base = 2 % (uint64_t(1) << deg);
    if (deg == 1) base = 1;  // x mod (x + 1) = 1
    while (e) {
        if (e & 1) r = mulmod(r, base, p, deg);
        base = mulmod(base, base, p, deg);
        e >>= 1;
    }
    return r;
}

bool primitive(uint64_t p, int deg) {
    if (!(p & 1)) return false;  // divisible by x
    const uint64_t order = (uint64_t(1) << deg) - 1;
    if (powmod(order, p, deg) != 1) return false;
    uint64_t n = order;
    for (uint64_t q = 2; q * q <= n; q++) {  // x^(order / q) != 1 for every prime factor q
        if (n % q) continue;
        if (powmod(order / q, p, deg) == 1) return false;
        while (n % q == 0) n /= q;
    }
    return n == 1 || powmod(order / n, p, deg) != 1;
}

// Each dimension's numbers live in their own allocation, published through an atomic pointer and never
// freed or moved, so readers need no lock while another thread adds dimensions. by_bit holds them again transposed
// (32 rows of kMaxDims + 64; calloc maps untouched pages lazily), written before `ready` is released.
struct Table {
    std::mutex mu;
    std::atomic<uint32_t*> v[SobolTable::kMaxDims] = {};
    static constexpr size_t kRow = size_t(SobolTable::kMaxDims) + 64;
    uint32_t* by_bit = static_cast<uint32_t*>(std::calloc(32 * kRow, sizeof(uint32_t)));
    std::atomic<int> ready{0};  // dimensions [0, ready) are complete: ensure's lock-free fast path
    int dims = 0;
    int deg = 1;
    uint64_t next = 0;  // next candidate polynomial (without the leading term) at `deg`
    uint64_t lcg = 0x2545F4914F6CDD1Dull;
};

Table& table() {
    static Table* t = new Table();
    return *t;
}

void publish(Table& t, int d, uint32_t* v) {
    if (t.by_bit)  // (null where its 8 MiB could not be had: by_bit() says so, and callers take dim())
        for (int i = 0; i < 32; i++) t.by_bit[size_t(i) * Table::kRow + size_t(d)] = v[i];
    t.v[d].store(v, std::memory_order_release);
}

}  // namespace

const uint32_t* SobolTable::dim(int d) { return table().v[d].load(std::memory_order_acquire); }

const uint32_t* SobolTable::by_bit(int i) {
    Table& t = table();
    return t.by_bit ? t.by_bit + size_t(i) * Table::kRow : nullptr;
}

void SobolTable::ensure(int dims) {
    Table& t = table();
    if (dims <= 0) return;
    if (dims > kMaxDims) dims = kMaxDims;
    if (dims <= t.ready.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lk(t.mu);
    for (int d = t.dims; d < dims; d++) {
        uint32_t* v = new uint32_t[32];
        if (d == 0) {
            for (int i = 0; i < 32; i++) v[i] = uint32_t(1) << (31 - i);
            publish(t, d, v);
            continue;
        }
        // next primitive polynomial: p = x^deg + ... + 1
        uint64_t p;
        for (;;) {
            if (t.next >= (uint64_t(1) << t.deg)) t.deg++, t.next = 0;
            p = (uint64_t(1) << t.deg) | t.next;
            t.next++;
            if (primitive(p, t.deg)) break;
        }
        const int s = t.deg;
        std::vector<uint64_t> m(32 + size_t(s));
        for (int i = 1; i <= s && i <= 32; i++) {  // odd m_i < 2^i from a fixed 64-bit LCG
            t.lcg = t.lcg * 6364136223846793005ull + 1442695040888963407ull;
            m[size_t(i)] = ((t.lcg >> 33) % (uint64_t(1) << (i - 1))) * 2 + 1;
        }
        for (int i = s + 1; i <= 32; i++) {  // m_i = 2 a_1 m_{i-1} ^ 4 a_2 m_{i-2} ^ ... ^ 2^s m_{i-s} ^ m_{i-s}
            uint64_t x = m[size_t(i - s)] ^ (m[size_t(i - s)] << s);
            for (int k = 1; k < s; k++)
                if (p >> (s - k) & 1) x ^= m[size_t(i - k)] << k;
            m[size_t(i)] = x;
        }
        for (int i = 1; i <= 32; i++) v[i - 1] = uint32_t(m[size_t(i)] << (32 - i));
        publish(t, d, v);
    }
    if (dims > t.dims) t.dims = dims;
    t.ready.store(t.dims, std::memory_order_release);
}

}  // namespace of
