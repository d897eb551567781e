import HTTPTypes
import NIOCore
import NIOHTTP1

extension ConnectionGuard {
    /// First in the pipeline: bytes in, and the refusals out.
    final class RawSide: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let guarded: ConnectionGuard

        init(_ guarded: ConnectionGuard) { self.guarded = guarded }

        func handlerAdded(context: ChannelHandlerContext) {
            if context.channel.isActive { self.guarded.attached(context) }
        }

        func channelActive(context: ChannelHandlerContext) {
            self.guarded.attached(context)
            context.fireChannelActive()
        }

        func handlerRemoved(context: ChannelHandlerContext) { self.guarded.detached() }

        func channelInactive(context: ChannelHandlerContext) {
            self.guarded.detached()
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if self.guarded.isActive {
                self.guarded.bytesArrived(self.unwrapInboundIn(data).readableBytes)
                guard self.guarded.isActive else { return }
            } else if !self.guarded.isUpgraded {
                return  // refused: what follows is dropped
            }
            context.fireChannelRead(data)
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // The client finished sending after a refusal: nothing is left to wait for.
            if !self.guarded.isActive, !self.guarded.isUpgraded, let event = event as? ChannelEvent, event == .inputClosed {
                context.close(promise: nil)
            }
            context.fireUserInboundEventTriggered(event)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            self.guarded.writabilityChanged(context.channel.isWritable)
            context.fireChannelWritabilityChanged()
        }
    }

    /// Right after NIO's HTTP decoder: heads (checked by ``RequestFraming``), bodies, answers,
    /// and the reads held while an answer is owed.
    final class PartsSide: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias InboundOut = HTTPServerRequestPart
        typealias OutboundIn = HTTPServerResponsePart
        typealias OutboundOut = HTTPServerResponsePart
        let guarded: ConnectionGuard
        /// A WebSocket upgrade handler follows (the proxies): the first request may upgrade.
        let upgradable: Bool
        private var readHeld = false
        private var firstRequest = true
        /// NIO's decoder parses nothing after a request that asked for an upgrade: close after its answer.
        private var closeAfterAnswer = false

        init(_ guarded: ConnectionGuard, upgradable: Bool) {
            self.guarded = guarded
            self.upgradable = upgradable
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard self.guarded.isActive else { return }
            if self.guarded.upgrading {
                context.fireChannelRead(data)
                return
            }
            switch self.unwrapInboundIn(data) {
            case .head(var head):
                if let refusal = RequestFraming.refusal(for: head) {
                    self.guarded.refuse(refusal)
                    return
                }
                self.guarded.head()
                if head.headers.contains(name: "upgrade") {
                    self.closeAfterAnswer = true
                    if self.upgradable, self.firstRequest, Self.isWebSocketUpgrade(head) {
                        self.guarded.upgrading = true
                    } else {
                        // Answered as a plain request: an upgrade handler that finds no upgrader
                        // for it would drop it unanswered.
                        head.headers.remove(name: "upgrade")
                        self.firstRequest = false
                        context.fireChannelRead(self.wrapInboundOut(.head(head)))
                        return
                    }
                }
                self.firstRequest = false
            case .body:
                self.guarded.bodyProgressed()
            case .end:
                self.guarded.requestEnded()
            }
            context.fireChannelRead(data)
        }

        static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
            head.headers[canonicalForm: "upgrade"].contains { $0.utf8.elementsEqualIgnoringCase("websocket".utf8) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if error is HTTPParserError, self.guarded.isActive {
                self.guarded.refuse(APIError(.badRequest, message: "malformed HTTP request"))
                return
            }
            context.fireErrorCaught(error)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            switch self.unwrapOutboundIn(data) {
            case .head(let head) where head.status == .switchingProtocols && self.guarded.upgrading:
                self.guarded.upgraded()
                // Flushed here: a flush that follows this write would find this handler gone.
                context.writeAndFlush(data, promise: promise)
                if self.readHeld {
                    self.readHeld = false
                    context.read()
                }
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            case .head(var head):
                guard head.status.code >= 200 else { break }
                self.guarded.responseStarted()
                if self.guarded.upgrading {
                    // Not upgraded: the request was answered as a plain one.
                    self.guarded.upgrading = false
                    self.guarded.requestEnded()
                }
                if self.closeAfterAnswer {
                    head.headers.replaceOrAdd(name: "connection", value: "close")
                    context.write(self.wrapOutboundOut(.head(head)), promise: promise)
                    return
                }
            case .body:
                break
            case .end:
                self.guarded.responseEnded()
                if self.closeAfterAnswer {
                    // Closed once the answer is out, not before (a close drops unsent writes).
                    let written = context.eventLoop.makePromise(of: Void.self)
                    context.writeAndFlush(data, promise: written)
                    let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                    written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
                    written.futureResult.cascade(to: promise)
                    return
                }
                context.write(data, promise: promise)
                if self.readHeld, !self.guarded.waitsForAnswer {
                    self.readHeld = false
                    context.read()
                }
                return
            }
            context.write(data, promise: promise)
        }

        /// Pipelined requests wait in the socket, not in memory, while an answer is owed.
        func read(context: ChannelHandlerContext) {
            if self.guarded.waitsForAnswer {
                self.readHeld = true
                return
            }
            context.read()
        }
    }
}
