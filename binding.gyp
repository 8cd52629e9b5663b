{
  # The build of record. CUDA sources are compiled by nvcc (sm_90a machine code
  # for Hopper plus compute_90 PTX for newer GPUs) when a toolkit is found;
  # otherwise the addon is built without CUDA and reports cuda: false.
  "variables": {
    "cuda_home%": "<!(node scripts/find-cuda.mjs)",
    "nvcc_gencode": [
      "-gencode=arch=compute_90a,code=sm_90a",
      "-gencode=arch=compute_90,code=compute_90"
    ]
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
          "sources": ["<!@(node scripts/native-sources.mjs)"],
          "include_dirs": ["<(cuda_home)/include"],
          "defines": [
            "WIDEEP_WITH_CUDA=1",
            "WIDEEP_CUDA_ARCHS=\"sm_90a,compute_90\""
          ],
          "libraries": [
            "<(cuda_home)/lib64/libcudart_static.a",
            "-ldl",
            "-lpthread",
            "-lrt"
          ],
          "rules": [
            {
              "rule_name": "nvcc",
              "extension": "cu",
              "inputs": ["<(RULE_INPUT_PATH)"],
              "outputs": ["<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).cu.o"],
              "process_outputs_as_sources": 1,
              "message": "nvcc <(RULE_INPUT_PATH)",
              "action": [
                "<(cuda_home)/bin/nvcc", "-std=c++17", "-O3", "-lineinfo",
                "<@(nvcc_gencode)",
                "--expt-relaxed-constexpr",
                "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden",
                "-DWIDEEP_WITH_CUDA=1",
                "-I<(module_root_dir)/native",
                "-c", "<(RULE_INPUT_PATH)",
                "-o", "<@(_outputs)"
              ]
            }
          ]
        }]
      ]
    }
  ]
}
