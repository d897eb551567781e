import Prometheus

/// swift-prometheus takes a metric's name in parts (`metricName` and `unitName`, joined with an
/// underscore). Titanium writes each name whole, as it appears in `/metrics`, the alert rules and
/// the dashboards, so that one search finds every use; these split it at its last underscore.
extension PrometheusCollectorRegistry {
    public func makeCounter(named name: String, labels: [(String, String)] = [], help: String) -> Counter {
        let descriptor = MetricNameDescriptor(whole: name, help: help)
        return labels.isEmpty ? self.makeCounter(descriptor: descriptor) : self.makeCounter(descriptor: descriptor, labels: labels)
    }

    public func makeGauge(named name: String, labels: [(String, String)] = [], help: String) -> Gauge {
        let descriptor = MetricNameDescriptor(whole: name, help: help)
        return labels.isEmpty ? self.makeGauge(descriptor: descriptor) : self.makeGauge(descriptor: descriptor, labels: labels)
    }

    public func makeDurationHistogram(
        named name: String, labels: [(String, String)] = [], buckets: [Duration], help: String
    ) -> DurationHistogram {
        let descriptor = MetricNameDescriptor(whole: name, help: help)
        return labels.isEmpty
            ? self.makeDurationHistogram(descriptor: descriptor, buckets: buckets)
            : self.makeDurationHistogram(descriptor: descriptor, labels: labels, buckets: buckets)
    }
}

extension MetricNameDescriptor {
    /// `http_requests_total` → `http_requests` + `total`; a name without an underscore is whole.
    init(whole name: String, help: String) {
        if let underscore = name.lastIndex(of: "_"), underscore != name.startIndex, name.index(after: underscore) != name.endIndex {
            self.init(metricName: String(name[..<underscore]), unitName: String(name[name.index(after: underscore)...]), helpText: help)
        } else {
            self.init(metricName: name, unitName: "", helpText: help)
        }
    }
}
