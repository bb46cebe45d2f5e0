package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// Reading over gRPC: Subscribe is /events for services. A subscriber is a
// connection of the hub like any browser's (conn.go), registered, replayed,
// made live and evicted by the same code; only where its frames go differs.
// A browser's go to its library stream; a gRPC subscriber's go to its sink,
// a channel of --queue-size items that a goroutine of the RPC's handler
// drains into stream.Send. The hub offers to a sink without blocking
// (hub.trySink), as it offers to a library stream: a full sink evicts its
// connection, and the RPC ends with RESOURCE_EXHAUSTED. A reader held back
// by gRPC flow control thus costs the hub nothing, and delays no one: its
// sender waits in Send, not the hub; a Send that waits --write-timeout
// evicts it too, and the handler, which does not wait for a Send, ends the
// RPC and gives back its places as soon as its connection ends.

// sink is where a gRPC subscriber's connection gets its frames.
type sink struct {
	ch chan sinkItem // capacity: the hub's queue size
	// full is set when the hub found ch full and evicted the connection:
	// the RPC then ends with RESOURCE_EXHAUSTED.
	full atomic.Bool
	// stalled is set when a Send waited --write-timeout and the
	// connection was evicted for it: RESOURCE_EXHAUSTED too.
	stalled atomic.Bool
}

// sinkItem is one frame for a sink: an event, a group of one stream's
// consecutive events (a copy: the hub's group aliases the engine's batch),
// or a reset (reset is its reason, head the id to continue from).
type sinkItem struct {
	event *Event
	group []*Event
	reset string
	head  uint64
}

// put hands it to the sink, waiting while the sink is full (a replay, paced
// by its reader, as the library's Publish paces a browser's); false when
// ctx ended first.
func (s *sink) put(ctx context.Context, it sinkItem) bool {
	select {
	case s.ch <- it:
		return true
	case <-ctx.Done():
		return false
	}
}

// sinkOutput is a sink connection's streamOutput: it has no socket of its
// own to flush or to cut (eviction cancels its context instead).
type sinkOutput struct{}

func (sinkOutput) Flush() error                     { return nil }
func (sinkOutput) SetWriteDeadline(time.Time) error { return nil }

// readService serves the reading side of the gRPC API (Subscribe, History)
// and GET /history. Safe for concurrent use: its fields are set once.
type readService struct {
	hub        *hub
	auth       *authenticator // nil: subscriber auth off, every stream readable
	pubs       *publishers    // nil: no publishers file
	limits     *admission     // the same places as /events'; nil: none
	maxStreams int            // per subscription; <= 0: no limit
	maxName    int            // zero means MaxStreamName
	// writeTimeout bounds each Send (--write-timeout): a reader that does
	// not take a message for that long is evicted.
	writeTimeout time.Duration
	// senders counts the goroutines sending Subscribe's frames; each ends
	// within moments of its RPC (see Subscribe), and the shutdown waits
	// for them once the gRPC server stopped.
	senders sync.WaitGroup
	// stop ends every Subscribe when the bridge begins to shut down, before
	// gRPC's graceful stop, which waits for them.
	stop    context.Context
	metrics *metrics
	log     *slog.Logger
}

// Subscribe implements bridge.v1.BridgeService.Subscribe; see the proto
// for its contract. Its checks are /events', in the same order: request,
// limits, token and grants, the subject's count, then registration.
func (rs *readService) Subscribe(req *bridgev1.SubscribeRequest, stream grpc.ServerStreamingServer[bridgev1.SubscribeResponse]) error {
	ctx := stream.Context()
	streams, err := rs.checkStreams(req.GetStreams())
	if err != nil {
		return err
	}
	format, known := parseFormat(req.GetFormat())
	if !known {
		rs.metrics.rejected(rejectBadRequest)
		return status.Errorf(codes.InvalidArgument, "format %q is unknown: use data (the default), envelope or cloudevents", req.GetFormat())
	}
	release, reason := rs.limits.admit(addrKey(peerIP(ctx)))
	if reason != "" {
		rs.metrics.rejected(reason)
		return status.Errorf(codes.ResourceExhausted, "the bridge refuses new subscribers for now (%s): retry later", reason)
	}
	defer release()
	subject, expires, via, err := rs.authorize(ctx, streams)
	if err != nil {
		return err
	}
	releaseSubject, reason := rs.limits.admitSubject(subject)
	if reason != "" {
		rs.metrics.rejected(reason)
		return status.Errorf(codes.ResourceExhausted, "too many subscriptions of this token's subject (%s): close one, or retry later", reason)
	}
	defer releaseSubject()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(rs.stop, cancel)()
	sk := &sink{ch: make(chan sinkItem, rs.hub.queueSize)}
	c, err := rs.hub.registerSink(streams, format, req.AfterId != nil, req.GetAfterId(), sk, cancel)
	if err != nil {
		return status.Error(codes.Unavailable, "the bridge is shutting down: subscribe again later or to another instance")
	}
	if !expires.IsZero() {
		t := time.AfterFunc(closeDelay(time.Now(), expires), func() {
			rs.hub.closeWithRetry(c, evictTokenExpiry, time.Millisecond)
		})
		defer t.Stop()
	}
	// The response headers say the subscription is registered: an event
	// published from then on reaches it (as /events' 200 does).
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		cancel()
		rs.hub.unregister(c)
		return err
	}
	if c.resume {
		rs.hub.checkResume(ctx, c)
	}
	done := rs.hub.subscribed(ctx, c)

	// The frames are sent by a goroutine of their own, so that this one
	// can end the RPC while a Send is blocked: a reader that stops
	// reading fills its flow-control window, and Send then waits for it
	// for as long as it likes. Ending the RPC is the only way to unblock
	// that Send (grpc-go: SendMsg blocks until there is flow control for
	// the message, or the stream is done; the handler's return makes it
	// done). So the handler returns as soon as the connection ends
	// (eviction, shutdown, token expiry) or a Send has waited for
	// --write-timeout (the stall timer evicts it), and gives back its
	// places then, not once the reader reads again. See pump for how the
	// sender keeps to grpc-go's rules.
	stall := time.AfterFunc(time.Hour, func() {
		sk.stalled.Store(true)
		rs.hub.evict(c, evictWriteDeadline)
	})
	stall.Stop()
	defer stall.Stop()
	sent := make(chan error, 1) // abandonable: the handler may be gone
	rs.senders.Add(1)
	go func() { // ends when ctx does, or at a failed Send; joined at shutdown
		defer rs.senders.Done()
		sent <- rs.pump(ctx, stream, c, sk, stall)
	}()
	// A publisher's credential lasts until a reload of the publishers
	// file drops its entry or its read grant: the read ends then.
	var reloaded <-chan struct{}
	if via != nil {
		reloaded = via.replaced
	}
	var revoked error
wait:
	for {
		select {
		case err = <-sent:
			break wait
		case <-ctx.Done():
			break wait
		case <-reloaded:
			if _, _, via, revoked = rs.authorize(ctx, streams); revoked != nil {
				revoked = status.Error(status.Code(revoked), "the publishers file was reloaded and no longer lets this credential read these streams ("+status.Convert(revoked).Message()+"): subscribe again with a credential that may, and after_id set to the id of the last message read")
				break wait
			}
			reloaded = nil
			if via != nil {
				reloaded = via.replaced
			}
		}
	}
	cancel()
	releaseSubject() // before the connection leaves the count, as /events'
	release()
	if done != nil {
		<-done
	}
	rs.hub.unregister(c)
	if err != nil {
		return err // the client went: its own status
	}
	if revoked != nil {
		return revoked
	}
	return rs.ended(stream.Context(), c, sk)
}

// pump sends what the hub hands c's sink until ctx ends, and returns nil
// then, or the error of a failed Send (the client went). It runs on a
// goroutine of its own (see Subscribe): the only one that calls Send on
// this stream, as grpc-go requires. It checks ctx before each Send, and
// Subscribe cancels ctx before it returns, so a Send starts after the
// handler returned only when it passed that check first; that Send fails
// at once (the stream is done), as a Send does when the client resets the
// stream. Each Send arms stall: a Send that has not completed within
// --write-timeout evicts the connection.
func (rs *readService) pump(ctx context.Context, stream grpc.ServerStreamingServer[bridgev1.SubscribeResponse], c *conn, sk *sink, stall *time.Timer) error {
	send := func(m *bridgev1.SubscribeResponse) error {
		if ctx.Err() != nil {
			return nil
		}
		stall.Reset(rs.writeTimeout)
		err := stream.Send(m)
		stall.Stop()
		return err
	}
	for ctx.Err() == nil {
		var it sinkItem
		select {
		case it = <-sk.ch:
		case <-ctx.Done():
			continue
		}
		var err error
		switch {
		case it.event != nil:
			err = send(rs.message(c, it.event))
		case it.group != nil:
			for _, ev := range it.group {
				if err = send(rs.message(c, ev)); err != nil {
					break
				}
			}
		default:
			data := resetFrame(it.head, it.reset).Data
			err = send(&bridgev1.SubscribeResponse{
				Id: it.head, Type: ResetEvent, Data: string(data),
				BridgeReset: &bridgev1.Reset{Reason: it.reset, LastEventId: it.head},
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ended is the status a Subscribe ends with when its connection ended
// (rpcCtx is the RPC's own context).
func (rs *readService) ended(rpcCtx context.Context, c *conn, sk *sink) error {
	switch {
	case sk.full.Load():
		return status.Errorf(codes.ResourceExhausted,
			"this subscriber fell behind: more than %d frames (--queue-size) waited for it; read faster, then subscribe again with after_id set to the id of the last message read",
			rs.hub.queueSize)
	case sk.stalled.Load():
		return status.Errorf(codes.ResourceExhausted,
			"this subscriber stopped reading: a message waited %s (--write-timeout) for it to read; read continuously, then subscribe again with after_id set to the id of the last message read",
			rs.writeTimeout)
	case rs.stop.Err() != nil:
		return status.Error(codes.Unavailable, "the bridge is shutting down: subscribe again, to another instance or later, with after_id set to the id of the last message read")
	case c.evicted.Load():
		return status.Error(codes.Unavailable, "the bridge could not deliver every event in order here: subscribe again with after_id set to the id of the last message read")
	case c.closeRetry.Load() != 0 && rpcCtx.Err() == nil:
		return status.Error(codes.Unauthenticated, "the token expires: subscribe again with a fresh token and after_id set to the id of the last message read")
	}
	return status.FromContextError(rpcCtx.Err()).Err()
}

// message is ev as Subscribe sends it on c.
func (rs *readService) message(c *conn, ev *Event) *bridgev1.SubscribeResponse {
	return &bridgev1.SubscribeResponse{
		Id:     ev.ID,
		Stream: ev.Stream,
		Type:   ev.Type,
		Time:   timestamppb.New(ev.Time),
		Data:   string(ev.frame(c.format, rs.hub.ce).Data),
	}
}

// checkStreams checks the stream names of a request as /events does.
func (rs *readService) checkStreams(names []string) ([]string, error) {
	if len(names) == 0 {
		rs.metrics.rejected(rejectBadRequest)
		return nil, status.Error(codes.InvalidArgument, `no stream given: set streams, such as {"streams": ["orders"]}`)
	}
	streams, reason, err := parseStreams(names, rs.maxStreams, rs.maxName)
	if err != nil {
		rs.metrics.rejected(reason)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return streams, nil
}

// authorize decides whether the caller may read streams, by /events' rules
// with the credential of gRPC metadata: with subscriber auth off every
// stream is readable; otherwise "authorization: Bearer TOKEN" is a
// publisher's token (the publishers file) whose read patterns must cover
// streams, else a subscriber JWT whose grants (or the public patterns) must;
// without a token, a publisher's client certificate with read patterns, or
// the public patterns alone. It returns the token's subject and expiry (zero
// for a publisher, whose credential does not expire), or a status error:
// UNAUTHENTICATED for a missing or bad credential, PERMISSION_DENIED for
// streams not granted, UNAVAILABLE while the key set cannot be fetched.
//
// via is the publishers file's version whose entry authorized the read; nil
// when no entry of the file did (a JWT, the public patterns, auth off).
func (rs *readService) authorize(ctx context.Context, streams []string) (subject string, expires time.Time, via *publisherSet, err error) {
	if rs.auth == nil {
		return "", time.Time{}, nil, nil
	}
	var set *publisherSet
	if rs.pubs != nil {
		set = rs.pubs.current()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) > 1:
		return "", time.Time{}, nil, rs.refuse(authReasonMalformed, status.Error(codes.Unauthenticated, "more than one authorization metadata entry: send one, \"authorization: Bearer TOKEN\""))
	case len(vals) == 1:
		token, ok := bearerToken(vals[0])
		if !ok {
			return "", time.Time{}, nil, rs.refuse(authReasonMalformed, status.Error(codes.Unauthenticated, "the authorization metadata is not \"Bearer TOKEN\": send the subscriber's token as \"authorization: Bearer TOKEN\""))
		}
		if set != nil {
			if p := set.byToken(token); p != nil {
				return "", time.Time{}, set, rs.publisherMayRead(p, streams)
			}
		}
		pr, err := rs.auth.verify(ctx, token)
		if errors.Is(err, errJWKSUnavailable) {
			return "", time.Time{}, nil, status.Error(codes.Unavailable, "the token signing keys (--jwks) cannot be fetched right now: retry later")
		}
		if err != nil {
			return "", time.Time{}, nil, rs.refuse(authFailureReason(err), status.Error(codes.Unauthenticated, err.Error()))
		}
		if refused := rs.auth.refused(streams, pr); len(refused) > 0 {
			return "", time.Time{}, nil, rs.refuse(authReasonNotGranted, status.Errorf(codes.PermissionDenied,
				"your token does not grant the streams %s: subscribe to granted streams only, or get a token that grants these", strings.Join(refused, ", ")))
		}
		return pr.subject, pr.expires, nil, nil
	}
	if name, ok := certPrincipal(ctx); ok && set != nil {
		if p := set.byCert(name); p != nil {
			return "", time.Time{}, set, rs.publisherMayRead(p, streams)
		}
	}
	if refused := rs.auth.refused(streams, principal{}); len(refused) > 0 {
		return "", time.Time{}, nil, rs.refuse(authReasonNoToken, status.Errorf(codes.Unauthenticated,
			"no token: the streams %s are not public; send a subscriber token as \"authorization: Bearer TOKEN\" metadata", strings.Join(refused, ", ")))
	}
	return "", time.Time{}, nil, nil
}

// publisherMayRead checks streams against p's read patterns.
func (rs *readService) publisherMayRead(p *publisher, streams []string) error {
	var refused []string
	for _, s := range streams {
		if !p.read.allows(s) {
			refused = append(refused, s)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	return rs.refuse(authReasonNotGranted, status.Errorf(codes.PermissionDenied,
		"%s may not read the streams %s: add patterns covering them to its \"read\" list in the publishers file, or use a subscriber token",
		p.describe(), strings.Join(refused, ", ")))
}

// refuse counts a refused read and returns err.
func (rs *readService) refuse(reason string, err error) error {
	rs.metrics.authFailed(sideSubscriber, reason)
	rs.log.Debug("gRPC reader refused", "reason", reason, "code", status.Code(err))
	return err
}

// peerIP is the address of a gRPC call's peer; the zero Addr for a unix
// socket or an unknown peer (which the limits then count as one).
func peerIP(ctx context.Context) netip.Addr {
	if a, ok := peerAddr(ctx).(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// errHistoryLimit says that a history read asked for more than limit events.
func errHistoryLimit(asked uint64, limit int) error {
	return fmt.Errorf("limit %d is over the most one history read returns, %d (--max-replay): ask for at most %d, and page on with after", asked, limit, limit)
}
