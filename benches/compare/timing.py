"""What every script here times with: the median of repeated runs."""
import time


def median_time(f, reps, inner):
    """Seconds per call of f: the median over reps samples of inner calls each, after one call
    to warm up."""
    f()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            f()
        samples.append((time.perf_counter() - t0) / inner)
    return sorted(samples)[len(samples) // 2]
