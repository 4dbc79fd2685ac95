{
  "targets": [
    {
      "target_name": "oneforward",
      "sources": [
        "native/core/status.cpp",
        "native/core/thread_pool.cpp",
        "native/rng/sobol.cpp",
        "native/kernels/cpu/conv.cpp",
        "native/kernels/cpu/gemm.cpp",
        "native/kernels/cpu/activation.cpp",
        "native/kernels/cpu/noise.cpp",
        "native/kernels/cpu/loss.cpp",
        "native/kernels/cpu/lr_reduce.cpp",
        "native/kernels/cpu/optimizer.cpp",
        "native/kernels/registry.cpp",
        "native/model/model.cpp",
        "native/model/describe.cpp",
        "native/model/recurrent.cpp",
        "native/model/units.cpp",
        "native/model/train.cpp",
        "native/estimators/backprop.cpp",
        "native/estimators/validate.cpp",
        "native/estimators/hybrid.cpp",
        "native/estimators/ulr.cpp",
        "native/estimators/weight_perturbation.cpp",
        "native/estimators/frozen.cpp",
        "native/device/sim_device.cpp",
        "native/device/trainer.cpp",
        "native/device/seq.cpp",
        "native/addon/errors.cpp",
        "native/addon/model_wrap.cpp",
        "native/addon/describe.cpp",
        "native/addon/train_worker.cpp",
        "native/addon/infer_worker.cpp",
        "native/addon/js_loss.cpp",
        "native/addon/addon.cpp"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "native"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-fexceptions", "-frtti", "-Wno-psabi"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-ffp-contract=off"] },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
