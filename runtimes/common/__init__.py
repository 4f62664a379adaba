"""What the embedded runtime, serving and the toolchain all stand on: the error root, the artifact's
manifest (and its atomic writer), the CPU classes int8 is made for, and the CLI's error boundary."""
