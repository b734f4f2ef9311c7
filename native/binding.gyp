{
  "targets": [
    {
      "target_name": "lockagent_native",
      "sources": ["src/addon.cc", "src/io_engine.cc", "src/hostwatch.cc", "src/filepages.cc", "src/deltascan.cc", "src/stamp.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # Node-API 8 (Node >= 12.22/14.17/16): TSFN ref/unref, instance data,
      # env cleanup hooks. C++ exceptions are enabled for node-addon-api.
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-pthread"],
      "ldflags": ["-pthread"],
      "libraries": ["-ldl"],
      "conditions": [
        ["OS!='linux'", {"type": "none"}]
      ]
    },
    {
      # The libvirt qemu hook's client (native/hook/lockagent-hook.c): plain C, no Node-API,
      # no libraries, so a hook call is a fork+exec instead of a node start. installHook execs
      # build/Release/lockagent-hook when it exists, else node dist/libvirt/hook.js.
      "target_name": "lockagent-hook",
      "type": "executable",
      "sources": ["hook/lockagent-hook.c", "hook/agent_client.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "cflags!": ["-pthread"],
      "ldflags!": ["-pthread", "-rdynamic"],
      # static when libc.a is there (no dynamic loader at each of the 3 execs per virsh start)
      "ldflags": ["<!@(sh hook/static-ldflags.sh)"],
      "conditions": [
        ["OS!='linux'", {"type": "none"}]
      ]
    },
    {
      # The libvirt lock-driver plugin (native/lockdriver/lockagent-lockdriver.c): plain C, libc
      # and libdl only, loaded by libvirtd with lock_manager = "lockagent" in qemu.conf; built as
      # build/Release/lockagent.so. Every symbol but virLockDriverImpl is hidden and bound
      # inside the plugin (-Bsymbolic): nothing of it may resolve against libvirtd's own.
      "target_name": "lockagent-lockdriver",
      "type": "shared_library",
      "product_name": "lockagent",
      "product_prefix": "",
      "product_extension": "so",
      "sources": ["lockdriver/lockagent-lockdriver.c", "hook/agent_client.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-fPIC"],
      "cflags!": ["-pthread"],
      "ldflags": ["-Wl,-Bsymbolic", "-Wl,-z,defs"],
      "libraries": ["-ldl"],
      "conditions": [
        ["OS!='linux'", {"type": "none"}]
      ]
    },
    {
      # The fencing guard (native/guard/lockagent-guard.c, docs/fencing.md): plain C, libc only,
      # a process of its own that SIGKILLs lease owners when the agent stops renewing.
      "target_name": "lockagent-guard",
      "type": "executable",
      "sources": ["guard/lockagent-guard.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "cflags!": ["-pthread"],
      "ldflags!": ["-pthread", "-rdynamic"],
      "conditions": [
        ["OS!='linux'", {"type": "none"}]
      ]
    },
    {
      # libvirt connections, domain control and events (virt_*.cc). Built
      # only where pkg-config finds libvirt (Debian: libvirt-dev), so a host
      # without it still gets lockagent_native.
      "target_name": "lockagent_virt",
      "variables": {
        "libvirt_found": "<!(pkg-config --exists libvirt && echo 1 || echo 0)"
      },
      "sources": [
        "src/virt_addon.cc",
        "src/virt_conn.cc",
        "src/virt_loop.cc",
        "src/virt_names.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": [
        "-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-pthread",
        "<!@(pkg-config --cflags libvirt 2>/dev/null || true)"
      ],
      "ldflags": ["-pthread"],
      "libraries": ["<!@(pkg-config --libs libvirt 2>/dev/null || true)", "-ldl"],
      "conditions": [
        ["OS!='linux' or libvirt_found!=1", {"type": "none"}]
      ]
    }
  ]
}
