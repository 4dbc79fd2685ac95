// The bfloat16 direct convolution on AMX tiles (amx.h): the Amx way of conv_forward_bf16 (bf16.h). An implicit GEMM
// whose A operand is read straight from the padded image by strided tile loads -- no patch matrix:
//   image:  each image zero-padded once into a per-thread bfloat16 buffer (Hp, Wp, C), channels-last (conv.h).
//   runs:   the taps of a window contiguous in the padded image: a kernel row's kw C values with dilation 1 across,
//           else one tap's C. Output position xo of row yo reads run r at  pad + (yo sh Wp + xo sw) C + off[r] , so
//           for 16 consecutive positions (fewer at a row's end) ONE tile load, with its base at the first position's
//           and a row stride of sw C values, gives the (positions, run) operand A.
//   chunks: a run of L values goes in nch chunks of cs values (cs even, <= 32: 64 bytes of pairs a tile row,
//           nch cs >= L); a chunk's values past its run are read (the next pixels', or zeros after the image) and
//           meet zero weights -- so an infinite or NaN input there makes NaN of an output whose window ends before it.
//   B:      per chunk and block of 16 output channels, the (cs / 2, 16) pair words of W^T (row q: taps 2q, 2q + 1),
//           packed once a call, zeros past the run and past Co.
//   C:      (positions, <= 16 channels) float32 tiles stored straight into y (row stride Co floats). Two output rows
//           x two blocks of 16 channels share each A and B load: C tiles 0, 1 (row yo), 6, 7 (row yo + 1), A tiles 2,
//           3, B tiles 4, 5. Output channels beyond 32 take further passes over the image.
// Each output element is summed by one task, chunk after chunk in a fixed order: the same bits whatever the thread
// count (amx.h says why they are not the emulation's).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/buffer.h"
#include "core/thread_pool.h"
#include "core/thread_scratch.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/bf16.h"

#define OF_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

namespace of::cpu {
namespace {

constexpr int kPositions = 16;  // rows of a tile: output positions a block
constexpr int kChunk = 32;      // bfloat16 values in a tile row (64 bytes)
constexpr int kImagesATask = 8;

struct AmxConvScratch {
    Buffer image, weights;
};

// How a window's taps split into runs and chunks.
struct Chunks {
    int L = 0, runs = 0, nch = 0, cs = 0;  // values a run, runs, chunks a run, values a chunk
    int blocks = 0;                        // blocks of 16 output channels
    int64_t padded = 0, slack = 0;         // values of the padded image, zeros after it (chunks read past runs)
    std::vector<int64_t> off;              // chunk j = r nch + k: its first value from a window's corner
    int64_t chunk_words() const { return int64_t(cs / 2) * 16; }  // a chunk's B for one block of channels
    int64_t weight_words() const { return int64_t(runs) * nch * blocks * chunk_words(); }
};

Chunks chunks_of(const ConvGeom& g) {
    Chunks c;
    const bool across = g.dw == 1;
    c.L = across ? g.kw * g.C : g.C;
    c.runs = across ? g.kh : g.kh * g.kw;
    c.nch = (c.L + kChunk - 1) / kChunk;
    c.cs = ((c.L + c.nch - 1) / c.nch + 1) / 2 * 2;
    c.blocks = (g.Co + 15) / 16;
    c.padded = int64_t(g.padded_h()) * g.padded_w() * g.C;
    c.slack = int64_t(c.nch) * c.cs - c.L + 32;
    const int64_t row = int64_t(g.padded_w()) * g.C;
    for (int r = 0; r < c.runs; r++) {
        const int ky = across ? r : r / g.kw, kx = across ? 0 : r % g.kw;
        for (int k = 0; k < c.nch; k++) c.off.push_back(ky * g.dh * row + int64_t(kx) * g.dw * g.C + k * c.cs);
    }
    return c;
}

// Bp[((j blocks + b) cs / 2 + q) 16 + o] = the word (W^T[tap 2q + 1], W^T[tap 2q]) of chunk j for output channel
// 16 b + o: the even tap in the low half, as TDPBF16PS pairs it with the image's value at the lower address.
void pack_weights(uint32_t* Bp, const float* W, const ConvGeom& g, const Chunks& c) {
    const int P = g.patch();
    std::fill(Bp, Bp + c.weight_words(), 0u);
    for (int r = 0; r < c.runs; r++)
        for (int k = 0; k < c.nch; k++)
            for (int b = 0; b < c.blocks; b++) {
                uint32_t* d = Bp + (int64_t(r * c.nch + k) * c.blocks + b) * c.chunk_words();
                for (int q = 0; q < c.cs / 2; q++)
                    for (int o = 16 * b; o < std::min(g.Co, 16 * b + 16); o++) {
                        const int e = k * c.cs + 2 * q;  // the pair's first value in the run
                        const float* w = W + int64_t(o) * P + int64_t(r) * c.L;
                        d[q * 16 + o - 16 * b] = bf16_pair(e + 1 < c.L ? w[e + 1] : 0.0f, e < c.L ? w[e] : 0.0f);
                    }
            }
}

// d[0, n) = s[0, n) rounded to bfloat16 (VCVTNEPS2BF16, as bf16_round_bits).
OF_AMX_TARGET void round_to_bf16(uint16_t* d, const float* s, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), __m256i(_mm512_cvtneps_pbh(_mm512_loadu_ps(s + i))));
    if (i < n) {
        const __mmask16 m = __mmask16((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(d + i, m, __m256i(_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + i))));
    }
}

// The image's pixels into a padded buffer whose border (and slack) is already zero.
void fill_padded(uint16_t* xp, const float* xi, const ConvGeom& g) {
    const int Wp = g.padded_w(), x0 = std::max(0, g.pw), x1 = std::min(Wp, g.W + g.pw);  // 0 <= px - pw < W
    if (x1 <= x0) return;
    for (int py = std::max(0, g.ph); py < std::min(g.padded_h(), g.H + g.ph); py++)
        round_to_bf16(xp + (int64_t(py) * Wp + x0) * g.C, xi + (int64_t(py - g.ph) * g.W + x0 - g.pw) * g.C,
                      int64_t(x1 - x0) * g.C);
}

// One block: positions of output rows yo (a0 -> y0) and, TWO_ROWS, yo + 1 (a1 -> y1), 16 output channels or,
// TWO_BLOCKS, 32. The tiles' rows and widths are the configuration's.
template <bool TWO_ROWS, bool TWO_BLOCKS>
OF_AMX_TARGET void tile_block(float* y0, float* y1, int ldy_bytes, const uint16_t* a0, const uint16_t* a1, int as_bytes,
                              const int64_t* off, int chunks, const uint32_t* b, int64_t b_block, int64_t b_chunk) {
    _tile_zero(0);
    if (TWO_BLOCKS) _tile_zero(1);
    if (TWO_ROWS) _tile_zero(6);
    if (TWO_ROWS && TWO_BLOCKS) _tile_zero(7);
    for (int j = 0; j < chunks; j++) {
        const uint32_t* bj = b + j * b_chunk;
        _tile_loadd(4, bj, 64);
        if (TWO_BLOCKS) _tile_loadd(5, bj + b_block, 64);
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
                           const uint32_t*, int64_t, int64_t);
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

// Images [i0, i1): every output, pass after pass of 32 channels, each pass block column by block column (a
// configuration each, kept while it stays the same).
OF_AMX_TARGET void images(float* y, const float* x, const uint32_t* Bp, uint16_t* xp, int i0, int i1, const ConvGeom& g,
                          const Chunks& c) {
    const int Wp = g.padded_w(), ldy = 4 * g.Co, as = 2 * g.sw * g.C, chunks = c.runs * c.nch;
    int loaded_rows = 0, loaded_c0 = -1;
    for (int i = i0; i < i1; i++) {
        fill_padded(xp, x + int64_t(i) * g.in_size(), g);
        if (i + 1 < i1)  // the next image into L2 while the tiles work on this one (memory is the bottleneck)
            for (int64_t e = 0; e < g.in_size(); e += 16) _mm_prefetch(x + (i + 1) * g.in_size() + e, _MM_HINT_T1);
        float* yi = y + int64_t(i) * g.positions() * g.Co;
        for (int c0 = 0; c0 < g.Co; c0 += 32) {
            const int n0 = std::min(16, g.Co - c0), n1 = std::min(16, g.Co - c0 - 16);
            for (int xo0 = 0; xo0 < g.Wo; xo0 += kPositions) {
                const int rows = std::min(kPositions, g.Wo - xo0);
                if (rows != loaded_rows || c0 != loaded_c0) {
                    const AmxConfig cfg = config_for(rows, n0, n1, c.cs);
                    _tile_loadconfig(&cfg);
                    loaded_rows = rows, loaded_c0 = c0;
                }
                const uint32_t* b = Bp + int64_t(c0 / 16) * c.chunk_words();
                for (int yo = 0; yo < g.Ho; yo += 2) {
                    const bool two = yo + 1 < g.Ho;
                    const uint16_t* a0 = xp + (int64_t(yo) * g.sh * Wp + int64_t(xo0) * g.sw) * g.C;
                    float* y0 = yi + (int64_t(yo) * g.Wo + xo0) * g.Co + c0;
                    kTileBlocks[two][n1 > 0](y0, y0 + int64_t(g.Wo) * g.Co, ldy, a0, a0 + int64_t(g.sh) * Wp * g.C, as,
                                             c.off.data(), chunks, b, c.chunk_words(),
                                             int64_t(c.blocks) * c.chunk_words());
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
    // a tile row's stride and a chunk's offsets are ints and int64s of bytes: far beyond any image that fits
    if (int64_t(g.sw) * g.C > (int64_t(1) << 28)) return false;
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
            const int64_t values = c.padded + c.slack;
            if (!reserve(sc.image, (values + 1) / 2)) return void(ok[size_t(t)] = 0);
            uint16_t* xp = reinterpret_cast<uint16_t*>(sc.image.data());
            std::fill(xp, xp + values, uint16_t(0));  // the border and the slack; each image fills the rest
            images(y, x, Bp, xp, t * per, std::min(n, (t + 1) * per), g, c);
        },
        int64_t(n) * g.positions() * g.patch() * g.Co / 64);
    return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

double conv_amx_scratch_floats(const ConvGeom& g) {
    const Chunks c = chunks_of(g);  // the caller's packed weights, each thread's padded image; 16 floats' rounding
    return double(c.weight_words()) + double(c.padded + c.slack + 1) / 2 + 32.0;
}

}  // namespace of::cpu
