import Foundation
import TitaniumHTTP
import TitaniumTrace

/// load-balancer settings, on top of ``ServiceConfiguration``.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `GATEWAY_URLS` | `http://127.0.0.1:7200` | the api-gateway replicas `/api/*` is balanced over |
/// | `STATS_TARGETS` | the four services on 127.0.0.1 | `name=url` pairs whose `/stats` and `/traces*` are gathered |
/// | `UI_URLS` | (none) | a dashboard-ui pool to proxy `/` to; when unset the files of `DASHBOARD_DIR` are served |
/// | `DASHBOARD_DIR` | `./dashboard-ui` | the dashboard's static files |
/// | `CHARTJS_PATH` | `/usr/share/javascript/chart.js/chart.min.js` | served as `vendor/chart.min.js` when `DASHBOARD_DIR` has none (Debian's libjs-chart.js) |
/// | `HEARTBEAT_SILENCE_SECONDS` | 60 | a dashboard WebSocket silent this long is closed |
/// | `BACKEND_CHECK_INTERVAL_MS` | 2000 | how often each gateway's `/health/ready` is checked |
/// | `BACKEND_CHECK_TIMEOUT_MS` | 1000 | a check not answered within this fails |
/// | `BACKEND_RISE` / `BACKEND_FALL` | 2 / 3 | passes to become healthy, failures to become unhealthy |
/// | `BACKEND_EJECT_AFTER` | 5 | consecutive failed requests that eject a gateway |
/// | `BACKEND_EJECT_SECONDS` | 30 | how long an ejected gateway gets no traffic |
/// | `TRACE_*`, `ADMIN_TOKEN` | | the trace store's (``TraceConfiguration``); `ADMIN_TOKEN` (``AdminToken``) also guards the merged `/traces*` and `/admin/faults/*` |
struct LoadBalancerConfiguration: Sendable {
    var gatewayURLs: [String]
    var statsTargets: [StatsTarget]
    var uiURLs: [String]
    var dashboardDirectory: String
    var chartJSPath: String
    var heartbeatSilence: Duration
    var backends: BackendPool.Settings
    var traces: TraceConfiguration

    init(common: ServiceConfiguration, settings: Settings) throws(ConfigurationError) {
        self.gatewayURLs = try settings.httpURLs("gateway.urls", default: ["http://127.0.0.1:7200"])
        self.statsTargets = try StatsTarget.parse(settings.list("stats.targets", default: [
            "api-gateway=http://127.0.0.1:7200", "auth-service=http://127.0.0.1:7301",
            "user-service=http://127.0.0.1:7302", "blog-service=http://127.0.0.1:7303",
        ]))
        self.uiURLs = try settings.httpURLs("ui.urls", default: [])
        self.dashboardDirectory = settings.string("dashboard.dir", default: "./dashboard-ui")
        self.chartJSPath = settings.string("chartjs.path", default: "/usr/share/javascript/chart.js/chart.min.js")
        self.heartbeatSilence = .seconds(try settings.int("heartbeat.silence.seconds", default: 60, range: 1...3600))
        self.backends = BackendPool.Settings(
            interval: .milliseconds(try settings.int("backend.check.interval.ms", default: 2000, range: 100...60_000)),
            checkTimeout: .milliseconds(try settings.int("backend.check.timeout.ms", default: 1000, range: 10...60_000)),
            rise: try settings.int("backend.rise", default: 2, range: 1...100),
            fall: try settings.int("backend.fall", default: 3, range: 1...100),
            ejectAfter: try settings.int("backend.eject.after", default: 5, range: 1...1000),
            ejectFor: .seconds(try settings.int("backend.eject.seconds", default: 30, range: 1...3600))
        )
        self.traces = try TraceConfiguration(settings: settings, dataDirectory: common.dataDirectory)
    }
}
