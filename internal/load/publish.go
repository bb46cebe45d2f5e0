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
	"google.golang.org/protobuf/types/known/structpb"

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
	conn   *grpc.ClientConn
	client bridgev1.BridgeServiceClient
	size   int
	pad    string
}

func newGRPCPublisher(addr string, size int) (*grpcPublisher, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
	}
	return &grpcPublisher{conn: conn, client: bridgev1.NewBridgeServiceClient(conn), size: size, pad: strings.Repeat("x", size)}, nil
}

// request is the PublishRequest of the load payload of seq at t.
func (p *grpcPublisher) request(stream string, seq uint64, t int64) *bridgev1.PublishRequest {
	seqStr := "fence"
	if seq != fenceSeq {
		seqStr = strconv.FormatUint(seq, 10)
	}
	tStr := strconv.FormatInt(t, 10)
	pad := p.size - payloadBase - len(seqStr) - len(tStr)
	obj := &structpb.Struct{Fields: map[string]*structpb.Value{
		"seq": structpb.NewStringValue(seqStr),
		"t":   structpb.NewStringValue(tStr),
		"x":   structpb.NewStringValue(p.pad[:max(pad, 0)]),
	}}
	return &bridgev1.PublishRequest{
		Stream:  stream,
		Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStructValue(obj)},
	}
}

func (p *grpcPublisher) publish(ctx context.Context, stream string, seq uint64, t int64) (uint64, error) {
	res, err := p.client.Publish(ctx, p.request(stream, seq, t))
	if err != nil {
		return 0, err
	}
	return res.GetId(), nil
}

func (p *grpcPublisher) publishBatch(ctx context.Context, evs []outEvent) ([]eventResult, error) {
	req := &bridgev1.PublishBatchRequest{Events: make([]*bridgev1.PublishRequest, len(evs))}
	for i, ev := range evs {
		req.Events[i] = p.request(ev.stream, ev.seq, ev.t)
	}
	res, err := p.client.PublishBatch(ctx, req)
	if err != nil {
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

// publishResult is the eventResult of a PublishResult.
func publishResult(r *bridgev1.PublishResult) eventResult {
	if st := r.GetStatus(); st != nil && codes.Code(st.GetCode()) != codes.OK { //nolint:gosec // a gRPC code
		return eventResult{err: status.Error(codes.Code(st.GetCode()), st.GetMessage())} //nolint:gosec // a gRPC code
	}
	return eventResult{id: r.GetId()}
}

func (p *grpcPublisher) openStream(ctx context.Context) (eventStream, error) {
	st, err := p.client.PublishStream(ctx)
	if err != nil {
		return nil, err
	}
	return &grpcEventStream{p: p, st: st}, nil
}

// grpcEventStream is one PublishStream.
type grpcEventStream struct {
	p  *grpcPublisher
	st bridgev1.BridgeService_PublishStreamClient
}

func (s *grpcEventStream) send(ev outEvent) error {
	return s.st.Send(s.p.request(ev.stream, ev.seq, ev.t))
}

func (s *grpcEventStream) recv() (eventResult, error) {
	r, err := s.st.Recv()
	if err != nil {
		return eventResult{}, err
	}
	return publishResult(r), nil
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
