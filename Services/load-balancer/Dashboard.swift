import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import TitaniumHTTP
import TitaniumProxy

/// `/` and everything no route claims: the dashboard, from a UI pool (`UI_URLS`) when one is
/// set, else the static files of `DASHBOARD_DIR`. Chart.js is not in the repository: when the
/// folder has no `vendor/chart.min.js`, the file at `CHARTJS_PATH` (Debian's libjs-chart.js) is
/// served there, so the charts draw however the load balancer was started.
struct Dashboard {
    let configuration: LoadBalancerConfiguration
    let client: OutboundHTTPClient
    let logger: Logger

    static let chartJSRoute = "/vendor/chart.min.js"

    func register(on router: Router<TitaniumRequestContext>) {
        let directory = self.configuration.dashboardDirectory
        if !self.configuration.uiURLs.isEmpty {
            let ui = UpstreamPool(name: "dashboard-ui", baseURLs: self.configuration.uiURLs)
            let proxy = ReverseProxy(client: self.client)
            for path: RouterPath in ["/", "/**"] {
                for method: HTTPRequest.Method in [.get, .head] {
                    router.on(path, method: method) { request, context in try await proxy.forward(request, context: context, to: ui) }
                }
            }
            return
        }
        guard FileManager.default.fileExists(atPath: directory) else {
            self.logger.notice("no dashboard to serve", metadata: ["dashboard.dir": .string(directory)])
            return
        }
        router.add(middleware: FileMiddleware(directory, searchForIndexHtml: true, logger: self.logger))
        guard !FileManager.default.fileExists(atPath: directory + Self.chartJSRoute) else { return }
        // Read once: about 200 KB, answered from memory on every dashboard load.
        guard let script = FileManager.default.contents(atPath: self.configuration.chartJSPath) else {
            self.logger.warning(
                "no Chart.js to serve: the dashboard will have no charts",
                metadata: ["chartjs.path": .string(self.configuration.chartJSPath), "dashboard.dir": .string(directory)]
            )
            return
        }
        let body = ByteBuffer(bytes: script)
        router.get(RouterPath(Self.chartJSRoute)) { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "application/javascript; charset=utf-8", .cacheControl: "public, max-age=3600"],
                body: .init(byteBuffer: body)
            )
        }
    }
}
