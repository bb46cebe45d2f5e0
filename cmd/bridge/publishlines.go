package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// `bridge publish` with no PAYLOAD argument: newline-delimited events on
// stdin, sent through one PublishStream, one result printed per line.

// maxLine bounds one line of input: far above any event the bridge takes
// (--max-payload), so that only a line that is no event at all stops the
// command.
const maxLine = 16 << 20

// inFlight bounds the lines sent and not yet answered: the stdin reader
// waits beyond it, as gRPC flow control would make it wait anyway.
const inFlight = 1024

// sentLine is one line of input on its way: sent (err nil) or refused
// here, before sending (err says why).
type sentLine struct {
	n    int // line number, from 1
	err  error
	sent time.Time
}

// lineOutcome tallies what became of the lines, for the exit status.
type lineOutcome struct {
	total, bad, refused, unsent int
}

// publishLines reads events from stdin, one per line, and publishes them
// through PublishStream on conn, printing for each line, in input order,
// its id (followed by " duplicate" when the bridge had it already) or
// "line N: " and why it failed. With a.stream set each line is a payload,
// as the PAYLOAD argument; without, a PublishRequest in its JSON form.
// Blank lines are skipped. a.timeout bounds the wait for each line's
// result, from when it was sent.
func publishLines(ctx context.Context, conn *grpc.ClientConn, a *publishArgs, stdin io.Reader, stdout io.Writer) (lineOutcome, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := bridgev1.NewBridgeServiceClient(conn).PublishStream(ctx)
	if err != nil {
		return lineOutcome{}, rpcError(conn.Target(), err)
	}
	types := &lazyTypes{conn: conn, found: map[protoreflect.FullName]*typeSet{}}
	lines := make(chan sentLine, inFlight)
	var readErr error // set by the reader before it closes lines
	var wg sync.WaitGroup
	// The reader ends at the end of stdin, when a line is too long, or when
	// the stream failed (it then stops at its next line: a read of stdin
	// cannot be interrupted, so on that path it is not waited for; the
	// command is about to exit).
	wg.Go(func() {
		defer close(lines)
		defer func() { _ = stream.CloseSend() }()
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		for n := 1; sc.Scan(); n++ {
			text := strings.TrimSpace(sc.Text())
			if text == "" {
				continue
			}
			req, err := lineRequest(ctx, types, a, []byte(text))
			l := sentLine{n: n, err: err, sent: time.Now()}
			select {
			case lines <- l:
			case <-ctx.Done():
				return
			}
			if err != nil {
				continue
			}
			if err := stream.Send(req); err != nil {
				return // the stream ended: Recv says why
			}
		}
		if err := sc.Err(); err != nil {
			readErr = exitf(exitUsage, "read stdin: %w (a line is at most %d bytes)", err, maxLine)
		}
	})

	var out lineOutcome
	w := bufio.NewWriter(stdout)
	defer func() { _ = w.Flush() }()
	var streamErr error
	for {
		var l sentLine
		var ok bool
		if streamErr == nil {
			l, ok = <-lines
		} else {
			// The stream failed: report the lines already read, and no
			// more (the reader may be waiting for stdin).
			select {
			case l, ok = <-lines:
			default:
				ok = false
			}
		}
		if !ok {
			break
		}
		out.total++
		switch {
		case l.err != nil:
			out.bad++
			fmt.Fprintf(w, "line %d: %v\n", l.n, l.err)
		case streamErr != nil:
			out.unsent++
			fmt.Fprintf(w, "line %d: not published: %v\n", l.n, streamErr)
		default:
			res, err := recvWithin(stream, cancel, a.timeout-time.Since(l.sent))
			if err != nil {
				streamErr = rpcError(conn.Target(), err)
				cancel(streamErr)
				out.unsent++
				fmt.Fprintf(w, "line %d: %v\n", l.n, streamErr)
				continue
			}
			if st := res.GetStatus(); st.GetCode() != int32(codes.OK) {
				out.refused++
				fmt.Fprintf(w, "line %d: refused: %s: %s\n", l.n, codes.Code(st.GetCode()), st.GetMessage()) //nolint:gosec // a gRPC code: small and non-negative
				continue
			}
			if res.GetDuplicate() {
				fmt.Fprintf(w, "%d duplicate\n", res.GetId())
			} else {
				fmt.Fprintf(w, "%d\n", res.GetId())
			}
		}
		if len(lines) == 0 {
			_ = w.Flush() // show results as they come when the input trickles in
		}
	}
	if streamErr != nil {
		return out, streamErr
	}
	wg.Wait()
	if readErr != nil {
		return out, readErr
	}
	// Every line answered: the bridge ends the stream with OK.
	if _, err := recvWithin(stream, cancel, a.timeout); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("the bridge sent more results than lines")
		}
		return out, rpcError(conn.Target(), err)
	}
	return out, nil
}

// recvWithin receives the next result, cancelling the stream when none
// comes within d.
func recvWithin(stream grpc.BidiStreamingClient[bridgev1.PublishRequest, bridgev1.PublishResult], cancel context.CancelCauseFunc, d time.Duration) (*bridgev1.PublishResult, error) {
	t := time.AfterFunc(max(d, 0), func() {
		cancel(status.Errorf(codes.DeadlineExceeded, "no result within --timeout %v", d))
	})
	defer t.Stop()
	return stream.Recv()
}

// lineRequest parses one line of input: with a.stream a payload (a JSON
// value, or a typed event with "@type"), else a PublishRequest in its
// JSON form, whose type, when it names none, is a.typ.
func lineRequest(ctx context.Context, types *lazyTypes, a *publishArgs, line []byte) (*bridgev1.PublishRequest, error) {
	if a.stream != "" {
		if err := checkPayloadSize(line, a.maxPayload); err != nil {
			return nil, err
		}
		req := &bridgev1.PublishRequest{Stream: a.stream, Type: a.typ}
		typeURL, typed, err := peekType(line)
		if err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		if !typed {
			var v structpb.Value
			if err := protojson.Unmarshal(line, &v); err != nil {
				return nil, fmt.Errorf("not JSON: %w", err)
			}
			req.Payload = &bridgev1.PublishRequest_Json{Json: &v}
			return req, nil
		}
		var event anypb.Any
		types.ctx = ctx
		if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal(line, &event); err != nil {
			return nil, fmt.Errorf("not a valid %s: %w", typeURL, err)
		}
		req.Payload = &bridgev1.PublishRequest_Event{Event: &event}
		return req, nil
	}
	req := &bridgev1.PublishRequest{}
	types.ctx = ctx
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal(line, req); err != nil {
		return nil, fmt.Errorf("not a PublishRequest in JSON (%s): %w", requestForm, err)
	}
	if req.GetStream() == "" {
		return nil, fmt.Errorf("no \"stream\": without --stream each line is a PublishRequest (%s)", requestForm)
	}
	if req.GetType() == "" {
		req.Type = a.typ
	}
	if n := proto.Size(req); a.maxPayload > 0 && n > a.maxPayload+grpcEnvelope {
		return nil, fmt.Errorf("the event is %d bytes: the limit is %d (--max-payload, the bridge's own limit); send a smaller event, or a reference to the data", n, a.maxPayload)
	}
	return req, nil
}

// requestForm shows a line of the PublishRequest form.
const requestForm = `{"stream":"orders","type":"note","json":{...}} or "event":{"@type":...}, and optionally "idempotencyKey"`

// grpcEnvelope is what a request may carry besides its payload (stream,
// type, key, framing): the bridge reads messages up to --max-payload plus
// this, and ends a whole stream on a larger one.
const grpcEnvelope = 64 << 10

// lazyTypes resolves the types of typed events for protojson: the types
// compiled in, then those the bridge at conn knows, asked through its
// server reflection once per type. It is used by one goroutine at a time.
type lazyTypes struct {
	conn  *grpc.ClientConn
	ctx   context.Context //nolint:containedctx // the context of the line being parsed: protojson's Resolver interface takes none
	found map[protoreflect.FullName]*typeSet
}

// typeSet is the answer of reflection for one type: its types, or why not.
type typeSet struct {
	types interface {
		protoregistry.MessageTypeResolver
	}
	err error
}

func (r *lazyTypes) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(name); err == nil {
		return mt, nil
	}
	set, ok := r.found[name]
	if !ok {
		types, err := reflectTypes(r.ctx, r.conn, name)
		set = &typeSet{err: err}
		if err == nil {
			set.types = types
		}
		r.found[name] = set
	}
	if set.err != nil {
		return nil, set.err
	}
	return set.types.FindMessageByName(name)
}

func (r *lazyTypes) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	return r.FindMessageByName(protoreflect.FullName(url[strings.LastIndexByte(url, '/')+1:]))
}

func (r *lazyTypes) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

func (r *lazyTypes) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}
