// The bfloat16 direct convolution on AMX tiles (amx.h): the Amx way of conv_forward_bf16 (bf16.h). An implicit GEMM
// whose A operand is read straight from the padded image by strided tile loads -- no patch matrix:
//   image:  each image zero-padded once into a per-thread bfloat16 buffer (Hp, Wp, Cp), channels-last (conv.h), with
//           Cp >= C channels a pixel (zeros past C) so that runs split into equal chunks.
//   runs:   the taps of a window contiguous in the padded image: a kernel row's kw Cp values with dilation 1 across,
//           else one tap's Cp. Output position xo of row yo reads run r at  pad + (yo sh Wp + xo sw) Cp + off[r] , so
//           for 16 consecutive positions (fewer at a row's end) ONE tile load, with its base at the first position's
//           and a row stride of sw Cp values, gives the (positions, run) operand A.
//   chunks: a run goes in nch chunks of exactly cs values (cs even, <= 32: 64 bytes of pairs a tile row); no load
//           reads past its run, so every value a tile multiplies is one the convolution multiplies, or a zero.
//   B:      per chunk, the (cs / 2, Co) pair words of W^T (row q: values 2q, 2q + 1), packed once a call, zeros for
//           the extra channels; a B tile is 16 channels of it.
//   C:      (positions, <= 16 channels) float32 tiles stored straight into y (row stride Co floats). Two output rows
//           x two blocks of 16 channels share each A and B load: C tiles 0, 1 (row yo), 6, 7 (row yo + 1), A tiles 2,
//           3, B tiles 4, 5. Output channels beyond 32 take further passes over the image. Blocks all have one shape
//           (images says how), so a task loads one tile configuration.
// Each output element is summed by one task, chunk after chunk in a fixed order: the same bits whatever the thread
// count (amx.h says why they are not the emulation's).
#include <algorithm>
#include <vector>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/bf16.h"
#include "kernels/cpu/simd.h"

namespace of::cpu {
namespace {

constexpr int kPositions = 16;  // rows of a tile: output positions a block
constexpr int kChunk = 32;      // bfloat16 values in a tile row (64 bytes)
constexpr int kImagesATask = 8;

struct AmxConvScratch {
    Buffer image, weights;
};

// How a window's taps split into runs and chunks. The padded image holds Cp >= C channels a pixel (the extra ones
// zero), chosen so that a run of L values splits into nch chunks of exactly cs (even, <= 32) values: no tile load
// reads outside its run, and no chunk is longer than its values.
struct Chunks {
    bool across = true;                    // runs along a kernel row (kw Cp values), else one tap's Cp
    int Cp = 0, L = 0, runs = 0, nch = 0;  // channels a pixel, values a run, runs, chunks a run
    int cs = 0, cols = 0;                  // values a chunk, output channels rounded up to 16
    int64_t padded = 0;                    // values of the padded image
    std::vector<int64_t> off;              // chunk j = r nch + k: its first value from a window's corner
    int64_t chunk_words() const { return int64_t(cs / 2) * cols; }  // a chunk's B: (cs / 2, cols) words
    int64_t weight_words() const { return int64_t(runs) * nch * chunk_words(); }
};

// Chunks of a run of L values: the fewest of at most 32 values, 0 where they cannot all be even and equal.
int exact_chunks(int64_t L) {
    const int64_t nch = (L + kChunk - 1) / kChunk;
    return L % (2 * nch) == 0 ? int(nch) : 0;
}

Chunks chunks_of(const ConvGeom& g) {
    Chunks c;
    // a tap a run: Cp = C rounded up to a multiple of 2 nch, with nch = ceil(C / 32) (it stays <= 32 nch)
    const int tap_nch = (g.C + kChunk - 1) / kChunk;
    c.across = false, c.Cp = (g.C + 2 * tap_nch - 1) / (2 * tap_nch) * (2 * tap_nch), c.nch = tap_nch;
    // a kernel row a run (dilation 1 across) where that takes fewer chunks a kernel row (the fewest extra channels)
    for (int Cp = g.C; g.dw == 1 && Cp <= g.C + 2 * tap_nch; Cp++) {
        const int nch = exact_chunks(int64_t(g.kw) * Cp);
        if (nch > 0 && nch < g.kw * tap_nch) {
            c.across = true, c.Cp = Cp, c.nch = nch;
            break;
        }
    }
    c.L = c.across ? g.kw * c.Cp : c.Cp;
    c.runs = c.across ? g.kh : g.kh * g.kw;
    c.cs = c.L / c.nch;
    c.cols = (g.Co + 15) / 16 * 16;
    c.padded = int64_t(g.padded_h()) * g.padded_w() * c.Cp;
    const int64_t row = int64_t(g.padded_w()) * c.Cp;
    for (int r = 0; r < c.runs; r++) {
        const int ky = c.across ? r : r / g.kw, kx = c.across ? 0 : r % g.kw;
        for (int k = 0; k < c.nch; k++) c.off.push_back(ky * g.dh * row + int64_t(kx) * g.dw * c.Cp + k * c.cs);
    }
    return c;
}

// Bp[(j cs / 2 + q) cols + o] = the word (W^T[value 2q + 1], W^T[value 2q]) of chunk j for output channel o: the even
// value in the low half, as TDPBF16PS pairs it with the image's value at the lower address; zero for the extra
// channels and past Co. A B tile of 16 channels from any o0 is (cs / 2) rows at Bp + j chunk_words + o0, stride cols.
void pack_weights(uint32_t* Bp, const float* W, const ConvGeom& g, const Chunks& c) {
    const int P = g.patch();
    std::vector<int> tap(size_t(c.L));  // value e of the run: its column of W, -1 for an extra channel
    std::fill(Bp, Bp + c.weight_words(), 0u);
    for (int r = 0; r < c.runs; r++) {
        for (int e = 0; e < c.L; e++) {
            const int kx = c.across ? e / c.Cp : r % g.kw, ky = c.across ? r : r / g.kw, ch = e % c.Cp;
            tap[size_t(e)] = ch < g.C ? (ky * g.kw + kx) * g.C + ch : -1;
        }
        for (int e = 0; e < c.L; e += 2) {  // chunk e / cs, pair row (e % cs) / 2
            const int lo = tap[size_t(e)], hi = tap[size_t(e + 1)];
            uint32_t* d = Bp + int64_t(r * c.nch + e / c.cs) * c.chunk_words() + int64_t(e % c.cs / 2) * c.cols;
            for (int o = 0; o < g.Co; o++) {
                const float* w = W + int64_t(o) * P;
                d[o] = bf16_pair(hi < 0 ? 0.0f : w[hi], lo < 0 ? 0.0f : w[lo]);
            }
        }
    }
}

// d[0, n) = s[0, n) rounded to bfloat16 (VCVTNEPS2BF16, as bf16_round_bits).
OF_AMX_TARGET void round_to_bf16(uint16_t* d, const float* s, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), __m256i(_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i))));
    if (i < n) {
        const __mmask16 m = lanes(n - i);
        _mm256_mask_storeu_epi16(d + i, m, __m256i(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + i))));
    }
}

// Pixels of C < Cp <= 16 values rounded to bfloat16 and spread Cp apart (the extra channels zero): 32 / Cp pixels a
// step, their C values permuted (vpermw) into place.
struct Spread {
    int C = 0, Cp = 0, per = 0;
    uint32_t keep = 0;  // the slots of real channels
    alignas(64) uint16_t from[32] = {};
    Spread(int C_, int Cp_) : C(C_), Cp(Cp_), per(32 / Cp_) {
        for (int q = 0, t = 0; q < per; q++)
            for (int ch = 0; ch < Cp; ch++, t++)
                if (ch < C) from[t] = uint16_t(q * C + ch), keep |= 1u << t;
    }
    // d (np pixels of Cp values) from s (np pixels of C)
    OF_AMX_TARGET void operator()(uint16_t* d, const float* s, int np) const {
        const __m512i idx = _mm512_load_si512(from);
        for (int p = 0; p < np; p += per, s += per * C, d += per * Cp) {
            const int k = std::min(per, np - p), n = k * C, slots = k * Cp;
            const __m512 lo = _mm512_maskz_loadu_ps(lanes(n), s), hi = _mm512_maskz_loadu_ps(lanes(n - 16), s + 16);
            const __m512i v = _mm512_maskz_permutexvar_epi16(keep, idx, __m512i(_mm512_cvtne2ps_pbh(hi, lo)));
            _mm512_mask_storeu_epi16(d, slots >= 32 ? ~0u : (1u << slots) - 1, v);
        }
    }
};

// The image's pixels into a padded buffer whose border and extra channels are already zero.
void fill_padded(uint16_t* xp, const float* xi, const ConvGeom& g, int Cp, const Spread& spread) {
    const int Wp = g.padded_w(), x0 = std::max(0, g.pw), x1 = std::min(Wp, g.W + g.pw);  // 0 <= px - pw < W
    if (x1 <= x0) return;
    for (int py = std::max(0, g.ph); py < std::min(g.padded_h(), g.H + g.ph); py++) {
        uint16_t* d = xp + (int64_t(py) * Wp + x0) * Cp;
        const float* s = xi + (int64_t(py - g.ph) * g.W + x0 - g.pw) * g.C;
        if (Cp == g.C) round_to_bf16(d, s, int64_t(x1 - x0) * g.C);
        else if (Cp <= 16) spread(d, s, x1 - x0);
        else
            for (int px = x0; px < x1; px++, d += Cp, s += g.C) round_to_bf16(d, s, g.C);
    }
}

// One block: positions of output rows yo (a0 -> y0) and, TWO_ROWS, yo + 1 (a1 -> y1), 16 output channels or,
// TWO_BLOCKS, 32 (B tiles at b and b + 16, rows ldb_bytes apart). The tiles' rows and widths are the configuration's.
template <bool TWO_ROWS, bool TWO_BLOCKS>
OF_AMX_TARGET void tile_block(float* y0, float* y1, int ldy_bytes, const uint16_t* a0, const uint16_t* a1, int as_bytes,
                              const int64_t* off, int chunks, const uint32_t* b, int ldb_bytes, int64_t b_chunk) {
    _tile_zero(0);
    if (TWO_BLOCKS) _tile_zero(1);
    if (TWO_ROWS) _tile_zero(6);
    if (TWO_ROWS && TWO_BLOCKS) _tile_zero(7);
    for (int j = 0; j < chunks; j++) {
        const uint32_t* bj = b + j * b_chunk;
        _tile_loadd(4, bj, ldb_bytes);
        if (TWO_BLOCKS) _tile_loadd(5, bj + 16, ldb_bytes);
        _tile_loadd(2, a0 + off[j], as_bytes);
        _tile_dpbf16ps(0, 2, 4);
        if (TWO_BLOCKS) _tile_dpbf16ps(1, 2, 5);
        if (TWO_ROWS) {
            _tile_loadd(3, a1 + off[j], as_bytes);
            _tile_dpbf16ps(6, 3, 4);
            if (TWO_BLOCKS) _tile_dpbf16ps(7, 3, 5);
        }
    }
    _tile_stored(0, y0, ldy_bytes);
    if (TWO_BLOCKS) _tile_stored(1, y0 + 16, ldy_bytes);
    if (TWO_ROWS) _tile_stored(6, y1, ldy_bytes);
    if (TWO_ROWS && TWO_BLOCKS) _tile_stored(7, y1 + 16, ldy_bytes);
}

using TileBlock = void (*)(float*, float*, int, const uint16_t*, const uint16_t*, int, const int64_t*, int,
                           const uint32_t*, int, int64_t);
constexpr TileBlock kTileBlocks[2][2] = {{tile_block<false, false>, tile_block<false, true>},
                                         {tile_block<true, false>, tile_block<true, true>}};

// The tiles for blocks of `rows` positions and n0 (+ n1) output channels.
AmxConfig config_for(int rows, int n0, int n1, int cs) {
    AmxConfig cfg;
    for (int t : {0, 6}) cfg.tile(t, rows, 4 * n0);
    if (n1 > 0)
        for (int t : {1, 7}) cfg.tile(t, rows, 4 * n1);
    for (int t : {2, 3}) cfg.tile(t, rows, 2 * cs);
    cfg.tile(4, cs / 2, 4 * n0);
    if (n1 > 0) cfg.tile(5, cs / 2, 4 * n1);
    return cfg;
}

// Images [i0, i1): every output in blocks of the same shape, so one tile configuration serves the task (loading one
// waits for every tile instruction before it): min(16, Wo) positions and min(32, Co) channels, the last block of a
// row (of the channels) moved back to end at the row's end (at Co). Positions (channels) two blocks share are
// computed twice, to the same bits: a tile row's sums depend on its own A row only.
OF_AMX_TARGET void images(float* y, const float* x, const uint32_t* Bp, uint16_t* xp, int i0, int i1, const ConvGeom& g,
                          const Chunks& c) {
    const int Wp = g.padded_w(), ldy = 4 * g.Co, as = 2 * g.sw * c.Cp, chunks = c.runs * c.nch;
    const int rows = std::min(kPositions, g.Wo), cols = std::min(32, g.Co), n1 = cols - 16;
    const AmxConfig cfg = config_for(rows, std::min(16, cols), n1, c.cs);
    const Spread spread(g.C, std::min(c.Cp, 16));  // (used where C < Cp <= 16)
    load_tile_config(cfg);
    for (int i = i0; i < i1; i++) {
        fill_padded(xp, x + int64_t(i) * g.in_size(), g, c.Cp, spread);
        if (i + 1 < i1)  // the next image into L2 while the tiles work on this one (memory is the bottleneck)
            for (int64_t e = 0; e < g.in_size(); e += 16) _mm_prefetch(x + (i + 1) * g.in_size() + e, _MM_HINT_T1);
        float* yi = y + int64_t(i) * g.positions() * g.Co;
        for (int o = 0; o < g.Co; o += cols) {
            const int o0 = std::min(o, g.Co - cols);
            for (int xo = 0; xo < g.Wo; xo += rows) {
                const int xo0 = std::min(xo, g.Wo - rows);
                for (int yo = 0; yo < g.Ho; yo += 2) {
                    const uint16_t* a0 = xp + (int64_t(yo) * g.sh * Wp + int64_t(xo0) * g.sw) * c.Cp;
                    float* y0 = yi + (int64_t(yo) * g.Wo + xo0) * g.Co + o0;
                    kTileBlocks[yo + 1 < g.Ho][n1 > 0](y0, y0 + int64_t(g.Wo) * g.Co, ldy, a0,
                                                       a0 + int64_t(g.sh) * Wp * c.Cp, as, c.off.data(), chunks,
                                                       Bp + o0, 4 * c.cols, c.chunk_words());
                }
            }
        }
    }
    _tile_release();
}

bool reserve(Buffer& b, int64_t floats) { return b.reserve(size_t(std::max<int64_t>(floats, 1))).ok(); }

}  // namespace

bool conv_forward_amx(float* y, const float* x, const float* W, int n, const ConvGeom& g) {
    if (!amx_usable() || n <= 0 || g.Co <= 0 || g.positions() <= 0 || g.patch() <= 0) return false;
    // a tile row's stride is an int of bytes: far beyond any image that fits
    if (int64_t(g.sw) * g.C > (int64_t(1) << 27)) return false;
    const Chunks c = chunks_of(g);
    AmxConvScratch& own = thread_scratch<AmxConvScratch>();
    if (!reserve(own.weights, c.weight_words())) return false;
    const uint32_t* Bp = words_of(own.weights);
    pack_weights(words_of(own.weights), W, g, c);
    const int threads = ThreadPool::instance().threads();
    const int per = std::clamp(n / (4 * threads), 1, kImagesATask), tasks = (n + per - 1) / per;
    std::vector<char> ok(size_t(tasks), 1);
    ThreadPool::instance().parallel_for(
        tasks,
        [&](int t) {
            AmxConvScratch& sc = thread_scratch<AmxConvScratch>();
            if (!reserve(sc.image, (c.padded + 1) / 2)) return void(ok[size_t(t)] = 0);
            uint16_t* xp = reinterpret_cast<uint16_t*>(sc.image.data());
            std::fill(xp, xp + c.padded, uint16_t(0));  // the border and extra channels; each image fills the rest
            images(y, x, Bp, xp, t * per, std::min(n, (t + 1) * per), g, c);
        },
        int64_t(n) * g.positions() * g.patch() * g.Co / 64);
    return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

double conv_amx_scratch_floats(const ConvGeom& g) {
    const Chunks c = chunks_of(g);  // the caller's packed weights, each thread's padded image; 16 floats' rounding
    return double(c.weight_words()) + double(c.padded + 1) / 2 + 32.0;
}

}  // namespace of::cpu
