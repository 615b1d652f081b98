{
  "targets": [
    {
      "target_name": "forkgc",
      "sources": [
        "native/arena.cc",
        "native/marker.cc",
        "native/child.cc",
        "native/child_registry.cc",
        "native/fork_exclusion.cc",
        "native/huge_page_restore.cc",
        "native/growth_prefault.cc",
        "native/stage_marks.cc",
        "native/string_encode.cc",
        "native/binding.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS",
        "_GNU_SOURCE"
      ],
      "ldflags": [
        "-Wl,-z,now"
      ],
      "cflags!": [
        "-fno-exceptions"
      ],
      "cflags_cc!": [
        "-fno-exceptions"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O2",
        "-fno-exceptions",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter"
      ],
      "conditions": [
        [
          "OS!='linux'",
          {
            "sources!": [
              "native/arena.cc",
              "native/marker.cc",
              "native/child.cc",
              "native/child_registry.cc",
              "native/fork_exclusion.cc",
              "native/huge_page_restore.cc",
              "native/growth_prefault.cc",
              "native/stage_marks.cc",
              "native/string_encode.cc",
              "native/binding.cc"
            ],
            "sources": [
              "native/unsupported.cc"
            ]
          }
        ]
      ]
    }
  ]
}
