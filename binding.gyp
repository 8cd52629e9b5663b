{
  # The N-API addon. gyp compiles the .cc files; the CUDA kernels (.cu) are a
  # static library that CMake builds through cmake-js (CMakeLists.txt, run by
  # the cuda_kernels action below) for sm_90a plus compute_90 PTX, linked here
  # with the static CUDA runtime. Without a CUDA toolkit or CMake,
  # scripts/find-cuda.mjs prints nothing and the CPU-only addon is built
  # (it reports cuda: false). docs/building.md tells the whole story.
  "variables": {
    "cuda_home%": "<!(node scripts/find-cuda.mjs)"
  },
  "targets": [
    {
      "target_name": "wideep",
      "sources": [
        "native/addon.cc",
        "native/build_info.cc",
        "native/common/errors.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "conditions": [
        ["cuda_home!=''", {
          "dependencies": ["cuda_kernels"],
          "sources": ["<!@(node scripts/native-sources.mjs)"],
          "include_dirs": ["<(cuda_home)/include"],
          "defines": [
            "WIDEEP_WITH_CUDA=1",
            "WIDEEP_CUDA_ARCHS=\"sm_90a,compute_90\""
          ],
          "libraries": [
            "<(module_root_dir)/build/kernels/libwideep_kernels.a",
            "<(cuda_home)/lib64/libcudart_static.a",
            "-ldl",
            "-lpthread",
            "-lrt"
          ]
        }]
      ]
    },
    {
      "target_name": "cuda_kernels",
      "type": "none",
      "conditions": [
        ["cuda_home!=''", {
          "actions": [
            {
              "action_name": "cmake_js",
              "message": "cmake-js: CUDA kernels (CMakeLists.txt)",
              "inputs": ["CMakeLists.txt", "<!@(node scripts/native-sources.mjs --kernel-inputs)"],
              "outputs": ["<(module_root_dir)/build/kernels/libwideep_kernels.a"],
              "action": ["node", "cmake/build-kernels.mjs", "<(cuda_home)", "<(module_root_dir)/build/kernels"]
            }
          ]
        }]
      ]
    }
  ]
}
