"""Front databases (前置库): department systems write case rows into agreed tables beside
them; the hub polls rows with syncsign = 0 and writes back 1 (taken) or 2 (failed). The
frontdb destination writes routed messages into a department's tables."""
