"""Request counters and latency histograms, exposed at /metrics in the
Prometheus text format (per process: each worker answers for itself).

`observe` runs on every request (a feed 304 is a few tens of microseconds),
so it only touches one list per (method, route, status); `render` sums them
into the per-route histograms.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOTS = len(BUCKETS) + 2  # bucket counts, the +Inf overflow, then the sum of seconds


class Metrics:
    def __init__(self) -> None:
        # (method, route, status) -> [count in bucket 0 .. overflow, seconds summed]
        self.series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0] * _SLOTS
        series[bisect.bisect_left(BUCKETS, seconds)] += 1
        series[-1] += seconds

    def render(self) -> str:
        out = [
            "# HELP calbridge_http_requests_total HTTP requests by method, route and status.",
            "# TYPE calbridge_http_requests_total counter",
        ]
        routes: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0] * _SLOTS)
        for (method, route, status), series in sorted(self.series.items()):
            out.append(
                f'calbridge_http_requests_total{{method="{method}",route="{_esc(route)}",'
                f'status="{status}"}} {int(sum(series[:-1]))}'
            )
            summed = routes[(method, route)]
            for i, value in enumerate(series):
                summed[i] += value
        out += [
            "# HELP calbridge_http_request_duration_seconds Request latency by method and route.",
            "# TYPE calbridge_http_request_duration_seconds histogram",
        ]
        for (method, route), summed in sorted(routes.items()):
            labels = f'method="{method}",route="{_esc(route)}"'
            acc = 0
            for bound, n in zip(BUCKETS, summed, strict=False):
                acc += int(n)
                out.append(f'calbridge_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {acc}')
            total = int(sum(summed[:-1]))
            out.append(f'calbridge_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}')
            out.append(f"calbridge_http_request_duration_seconds_sum{{{labels}}} {summed[-1]:.6f}")
            out.append(f"calbridge_http_request_duration_seconds_count{{{labels}}} {total}")
        return "\n".join(out) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
