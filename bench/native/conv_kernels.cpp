// Micro-bench of the CPU convolution paths on the speed suite's conv shapes (docs/performance.md): im2row + GEMM
// (forward, weight gradient with and without the LR row weights, input gradient) against the direct kernels of
// native/kernels/cpu/conv_direct.cpp, on one thread, in thread CPU time (the lower quartile of 21 calls), with the
// direct results' largest difference from the GEMM path relative to its largest value. Build and run from the
// repository root:
//   g++ -O3 -ffp-contract=off -fno-math-errno -std=c++17 -Inative bench/native/conv_kernels.cpp
//     native/kernels/cpu/{conv,conv_direct,gemm}.cpp native/core/{thread_pool,status}.cpp -lpthread -o
//     /tmp/conv_kernels
//   ONEFORWARD_THREADS=1 /tmp/conv_kernels        (ONEFORWARD_SIMD=avx2 for the AVX2 tiles)
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/gemm.h"

using namespace of;

static double cpu_ms() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}
template <class F>
static double time_ms(const F& f) {
    std::vector<double> t;
    for (int r = 0; r < 21; r++) {
        const double t0 = cpu_ms();
        f();
        t.push_back(cpu_ms() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 4];
}
static double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0, m = 0;
    for (size_t i = 0; i < a.size(); i++)
        d = std::max(d, double(std::abs(a[i] - b[i]))), m = std::max(m, double(std::abs(b[i])));
    return d / (m + 1e-30);
}

int main() {
    struct Shape {
        const char* name;
        int n, H, W, C, Co;
    };
    const Shape shapes[] = {
        {"small CNN conv 1, BP (64 images 28x28, 1 -> 8)", 64, 28, 28, 1, 8},
        {"small CNN conv 2, BP (64 images 14x14, 8 -> 16)", 64, 14, 14, 8, 16},
        {"small CNN conv 2, a ULR block (256 images)", 256, 14, 14, 8, 16},
        {"residual CNN conv, a ULR block (256 images 14x14, 8 -> 8)", 256, 14, 14, 8, 8},
        {"64 images 14x14, 64 -> 64", 64, 14, 14, 64, 64},
        {"16 images 14x14, 128 -> 128", 16, 14, 14, 128, 128},
    };
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::printf("%-58s %8s | %27s | %27s | %27s\n", "3x3 'same' conv, ms (GFLOP/s)", "GFLOP", "forward: gemm / direct",
                "weight grad (LR): gemm / dir", "input grad: gemm / direct");
    for (const Shape& s : shapes) {
        ConvGeom g;
        g.H = g.Ho = s.H, g.W = g.Wo = s.W, g.C = s.C, g.Co = s.Co, g.kh = g.kw = 3, g.ph = g.pw = 1;
        const int P = g.patch();
        const int rows = s.n * int(g.positions());
        auto filled = [&](size_t n) {
            std::vector<float> v(n);
            for (float& f : v) f = normal(rng);
            return v;
        };
        std::vector<float> x = filled(size_t(s.n) * g.in_size()), W = filled(size_t(s.Co) * P),
                           dv = filled(size_t(rows) * s.Co), w = filled(size_t(s.n));
        std::vector<float> cols(size_t(rows) * P), wexp(static_cast<size_t>(rows)), y0(size_t(rows) * s.Co),
            y1(y0.size()), dW0(W.size()), dW1(W.size()), dx0(x.size()), dx1(x.size());
        for (int r = 0; r < rows; r++) wexp[size_t(r)] = w[size_t(r / g.positions())];
        const double gflop = 2.0 * rows * P * s.Co / 1e9;
        const double f0 = time_ms([&] {
            cpu::im2row(cols.data(), x.data(), s.n, g);
            cpu::gemm(y0.data(), s.Co, 1, cols.data(), P, 1, W.data(), 1, P, nullptr, rows, s.Co, P, 1, 0);
        });
        const double w0 = time_ms([&] {
            cpu::im2row(cols.data(), x.data(), s.n, g);
            cpu::gemm(dW0.data(), P, 1, dv.data(), 1, s.Co, cols.data(), P, 1, wexp.data(), s.Co, P, rows, 0.5f, 0);
        });
        const double d0 = time_ms([&] {
            cpu::gemm(cols.data(), P, 1, dv.data(), s.Co, 1, W.data(), P, 1, nullptr, rows, P, s.Co, 1, 0);
            cpu::row2im(dx0.data(), cols.data(), s.n, g);
        });
        const double f1 = time_ms([&] { cpu::conv_forward(y1.data(), x.data(), W.data(), s.n, g); });
        const double w1 =
            time_ms([&] { cpu::conv_weight_grad(dW1.data(), dv.data(), x.data(), w.data(), s.n, g, 0.5f); });
        const double d1 = time_ms([&] { cpu::conv_input_grad(dx1.data(), dv.data(), W.data(), s.n, g); });
        auto pair = [&](double a, double b) {
            static char buf[64];
            std::snprintf(buf, sizeof buf, "%5.2f (%3.0f) / %5.2f (%3.0f)", a, gflop / a * 1e3, b, gflop / b * 1e3);
            return std::string(buf);
        };
        std::printf("%-58s %8.4f | %s | %s | %s   diff %.0e %.0e %.0e\n", s.name, gflop, pair(f0, f1).c_str(),
                    pair(w0, w1).c_str(), pair(d0, d1).c_str(), rel_diff(y1, y0), rel_diff(dW1, dW0),
                    rel_diff(dx1, dx0));
    }
}
