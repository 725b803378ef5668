"""Runtime and tool plumbing: user errors and the CLI wrapper, config loading
(mmdet/mmseg scope), dataset checks, atomic file writes, latency timing, CPU
distributed runs, and torch ``weights_only`` compatibility."""
