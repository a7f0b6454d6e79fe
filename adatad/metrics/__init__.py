"""`evaluate` metric modules shipped with adatad (load them with `evaluate.load(path)`)."""
