"""The one training loop and its pieces: optimizer, schedules, step, resume state, console, logs."""
