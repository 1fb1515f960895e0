"""What each command does, as importable functions: verify, bench, show, sweep and what they share."""
