"""Request counters and latency histograms, exposed at /metrics in the
Prometheus text format (per process: each worker answers for itself)."""

from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        key = (method, route)
        buckets = self.buckets.setdefault(key, [0] * len(BUCKETS))
        i = bisect.bisect_left(BUCKETS, seconds)
        if i < len(BUCKETS):
            buckets[i] += 1
        self.sums[key] += seconds
        self.counts[key] += 1

    def render(self) -> str:
        out = [
            "# HELP calbridge_http_requests_total HTTP requests by method, route and status.",
            "# TYPE calbridge_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(
                f'calbridge_http_requests_total{{method="{method}",route="{_esc(route)}",'
                f'status="{status}"}} {n}'
            )
        out += [
            "# HELP calbridge_http_request_duration_seconds Request latency by method and route.",
            "# TYPE calbridge_http_request_duration_seconds histogram",
        ]
        for (method, route), buckets in sorted(self.buckets.items()):
            labels = f'method="{method}",route="{_esc(route)}"'
            acc = 0
            for bound, n in zip(BUCKETS, buckets, strict=True):
                acc += n
                out.append(f'calbridge_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {acc}')
            total = self.counts[(method, route)]
            out.append(f'calbridge_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}')
            total_s = self.sums[(method, route)]
            out.append(f"calbridge_http_request_duration_seconds_sum{{{labels}}} {total_s:.6f}")
            out.append(f"calbridge_http_request_duration_seconds_count{{{labels}}} {total}")
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
