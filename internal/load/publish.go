package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// publisher sends one event of the load payload (see appendPayload) and
// returns the id the server assigned. Implementations are safe for
// concurrent use.
type publisher interface {
	publish(ctx context.Context, stream string, seq uint64, t int64) (uint64, error)
	close() error
}

// outEvent is one event to publish: seq of the named stream, published at t
// (Unix ns).
type outEvent struct {
	stream string
	seq    uint64
	t      int64
}

// eventResult is what became of one event of a batch or a stream: its id,
// or why it was refused.
type eventResult struct {
	id  uint64
	err error
}

// batchPublisher publishes several events in one call (ModeBatch); the
// results are in the order of evs. An error is the call's own: then no
// event has a result.
type batchPublisher interface {
	publishBatch(ctx context.Context, evs []outEvent) ([]eventResult, error)
}

// streamPublisher opens a publish stream (ModeStream), which lives as
// long as ctx.
type streamPublisher interface {
	openStream(ctx context.Context) (eventStream, error)
}

// eventStream is one publish stream: one result per event sent, in order.
// One goroutine sends while another receives.
type eventStream interface {
	send(ev outEvent) error
	recv() (eventResult, error)
	closeSend() error
}

// newPublisher returns the publisher of cfg.Target.
func newPublisher(cfg *Config) (publisher, error) {
	if cfg.Target == TargetBaseline {
		return newHTTPPublisher(cfg.URL, cfg.PayloadSize, cfg.Publishers)
	}
	return newGRPCPublisher(cfg.GRPCAddr, cfg.PayloadSize)
}

// grpcPublisher publishes to the bridge: bridge.v1.BridgeService/Publish with
// a json payload, over one HTTP/2 connection.
type grpcPublisher struct {
	conn  *grpc.ClientConn
	codec grpc.CallOption // wireCodec
	size  int
	pad   string
}

func newGRPCPublisher(addr string, size int) (*grpcPublisher, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
	}
	return &grpcPublisher{conn: conn, codec: grpc.ForceCodecV2(newWireCodec()), size: size, pad: strings.Repeat("x", size)}, nil
}

// fields are the payload's field values of seq at t: seq, t and the
// padding that makes it the payload size.
func (p *grpcPublisher) fields(seq uint64, t int64) (seqStr, tStr, pad string) {
	seqStr = "fence"
	if seq != fenceSeq {
		seqStr = strconv.FormatUint(seq, 10)
	}
	tStr = strconv.FormatInt(t, 10)
	return seqStr, tStr, p.pad[:max(p.size-payloadBase-len(seqStr)-len(tStr), 0)]
}

// request is the PublishRequest of the load payload of seq at t, encoded
// (see wire.go).
func (p *grpcPublisher) request(stream string, seq uint64, t int64) *wireRequest {
	s, ts, pad := p.fields(seq, t)
	z := sizes(stream, s, ts, pad)
	w := wireRequest(appendRequest(make([]byte, 0, z.request), z, stream, s, ts, pad))
	return &w
}

func (p *grpcPublisher) publish(ctx context.Context, stream string, seq uint64, t int64) (uint64, error) {
	var res bridgev1.PublishResponse
	if err := p.conn.Invoke(ctx, bridgev1.BridgeService_Publish_FullMethodName, p.request(stream, seq, t), &res, p.codec); err != nil {
		return 0, err
	}
	return res.GetId(), nil
}

func (p *grpcPublisher) publishBatch(ctx context.Context, evs []outEvent) ([]eventResult, error) {
	req := wireRequest(appendBatch(nil, p, evs))
	var res bridgev1.PublishBatchResponse
	if err := p.conn.Invoke(ctx, bridgev1.BridgeService_PublishBatch_FullMethodName, &req, &res, p.codec); err != nil {
		return nil, err
	}
	if len(res.GetResults()) != len(evs) {
		return nil, fmt.Errorf("PublishBatch answered %d results for %d events", len(res.GetResults()), len(evs))
	}
	out := make([]eventResult, len(evs))
	for i, r := range res.GetResults() {
		out[i] = publishResult(r)
	}
	return out, nil
}

// appendBatch appends the PublishBatchRequest of evs.
func appendBatch(b []byte, p *grpcPublisher, evs []outEvent) []byte {
	for _, ev := range evs {
		s, ts, pad := p.fields(ev.seq, ev.t)
		z := sizes(ev.stream, s, ts, pad)
		b = protowire.AppendTag(b, wireBatchEvents, protowire.BytesType)
		b = appendLen(b, z.request)
		b = appendRequest(b, z, ev.stream, s, ts, pad)
	}
	return b
}

// publishResult is the eventResult of a PublishResult.
func publishResult(r *bridgev1.PublishResult) eventResult {
	if st := r.GetStatus(); st != nil && codes.Code(st.GetCode()) != codes.OK { //nolint:gosec // a gRPC code
		return eventResult{err: status.Error(codes.Code(st.GetCode()), st.GetMessage())} //nolint:gosec // a gRPC code
	}
	return eventResult{id: r.GetId()}
}

func (p *grpcPublisher) openStream(ctx context.Context) (eventStream, error) {
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	st, err := p.conn.NewStream(ctx, desc, bridgev1.BridgeService_PublishStream_FullMethodName, p.codec)
	if err != nil {
		return nil, err
	}
	return &grpcEventStream{p: p, st: st}, nil
}

// grpcEventStream is one PublishStream.
type grpcEventStream struct {
	p  *grpcPublisher
	st grpc.ClientStream
}

func (s *grpcEventStream) send(ev outEvent) error {
	return s.st.SendMsg(s.p.request(ev.stream, ev.seq, ev.t))
}

func (s *grpcEventStream) recv() (eventResult, error) {
	var r bridgev1.PublishResult
	if err := s.st.RecvMsg(&r); err != nil {
		return eventResult{}, err
	}
	return publishResult(&r), nil
}

func (s *grpcEventStream) closeSend() error { return s.st.CloseSend() }

func (p *grpcPublisher) close() error { return p.conn.Close() }

// httpPublisher publishes to the baseline: POST /publish?stream=X with the
// payload as body; the response body is the id.
type httpPublisher struct {
	client *http.Client
	base   string
	size   int
}

func newHTTPPublisher(base string, size, conns int) (*httpPublisher, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("publish URL: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/publish"
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	return &httpPublisher{client: &http.Client{Transport: tr}, base: u.String() + "?stream=", size: size}, nil
}

func (p *httpPublisher) publish(ctx context.Context, stream string, seq uint64, t int64) (uint64, error) {
	body := appendPayload(make([]byte, 0, p.size+64), seq, t, p.size)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+url.QueryEscape(stream), bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("publish: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	id, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("publish: response %q is not an id", b)
	}
	return id, nil
}

func (p *httpPublisher) close() error {
	p.client.CloseIdleConnections()
	return nil
}
