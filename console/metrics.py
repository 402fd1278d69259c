"""Prometheus /metrics of the hub (prometheus-client's exposition format): message and delivery
counters and delivery times from the pulse, and gauges read when scraped: queue depths and dead
letters per route, relay lag and unpublished messages, unsealed events."""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from console.pulse import BUCKETS


class HubCollector:
    def __init__(self, board):
        self.board = board

    def collect(self):
        pulse = self.board.pulse
        messages, deliveries, seconds = pulse.snapshot_counters()
        total = CounterMetricFamily("huitong_messages", "Messages pushed to the hub, by sending system, type and "
                                    "outcome (accepted, rejected, duplicate)", labels=["system", "type", "outcome"])
        for (system, type_, outcome), count in sorted(messages.items()):
            total.add_metric([system, type_, outcome], count)
        yield total
        routed = CounterMetricFamily("huitong_route_deliveries", "Delivery attempts of routes, by outcome "
                                     "(delivered, failed and retried, dead_lettered)", labels=["route", "outcome"])
        for (route, outcome), count in sorted(deliveries.items()):
            routed.add_metric([route, outcome], count)
        yield routed
        histogram = HistogramMetricFamily("huitong_route_seconds", "Seconds from a message's acceptance to its "
                                          "delivery by a route", labels=["route"])
        for route, h in sorted(seconds.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKETS, h.counts):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            histogram.add_metric([route], buckets, h.total)
        yield histogram
        depth = GaugeMetricFamily("huitong_queue_depth", "Messages waiting in a route's queue (RabbitMQ)",
                                  labels=["route"])
        dead = GaugeMetricFamily("huitong_dead_letters", "Dead letters of a route (waiting for an operator)",
                                 labels=["route"])
        retrying = GaugeMetricFamily("huitong_route_retrying", "Deliveries of a route waiting for a retry",
                                     labels=["route"])
        for row in self.board.route_rows():
            if row["queue_depth"] is not None:
                depth.add_metric([row["id"]], row["queue_depth"])
            dead.add_metric([row["id"]], row["dead"])
            retrying.add_metric([row["id"]], row["retrying"])
        yield depth
        yield dead
        yield retrying
        checks = self.board.overview_health()["checks"]
        relay = checks.get("relay", {})
        yield GaugeMetricFamily("huitong_relay_lag_seconds", "Age of the oldest accepted message not yet published",
                                value=relay.get("lag_seconds", 0.0))
        yield GaugeMetricFamily("huitong_unpublished_messages", "Accepted messages not yet published",
                                value=relay.get("unpublished", 0) or 0)
        yield GaugeMetricFamily("huitong_unsealed_events", "Exchange-log events after the last seal",
                                value=checks.get("sealing", {}).get("unsealed_events", 0) or 0)
        for name in ("database", "broker"):
            yield GaugeMetricFamily(f"huitong_{name}_up", f"1 if the {name} answers", value=1 if checks.get(name, {}).get("ok") else 0)


def metrics_app(board):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(board))

    def app(environ, start_response):
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]
    return app
