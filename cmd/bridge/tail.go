package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

const tailUsage = `Usage: bridge tail [flags] --stream NAME [--stream NAME...]

Subscribes to streams and prints each frame as it arrives, one line per
frame: the id, the event name ("message" when the frame has none) and the
data, separated by tabs (--raw prints the frames as the bridge sends them).
When the bridge ends the stream, tail reconnects with the last id it saw, as a
browser does, unless --reconnect=false. --grpc reads with the gRPC Subscribe
call at --addr instead of /events (the same frames, in the same lines).

A bridge with subscriber auth wants a token (--token-file, --token, or the
environment variable BRIDGE_TOKEN), sent as Authorization: Bearer. --ca,
--cert or --key connect with TLS (an http:// URL is then read as https://).

Exit status: 0 stopped (interrupt, or --count frames printed); 1 bad flags;
2 the bridge could not be reached; 3 the bridge refused the subscription (its
message says why); 4 the bridge ended the stream (with --reconnect=false).
`

// tailArgs are the settings of `bridge tail`, from its flags.
type tailArgs struct {
	base, lastID, format string
	addr                 string
	grpc                 bool
	streams              []string
	raw, reconnect       bool
	count                int
	auth                 clientAuth
}

// newTailCmdLine defines the flags of `bridge tail`, which set a.
func newTailCmdLine(a *tailArgs) *cmdLine {
	fs := flag.NewFlagSet("bridge tail", flag.ContinueOnError)
	fs.StringVar(&a.base, "url", "http://localhost:8080", "base `URL` of the bridge's HTTP listener")
	fs.Var(newListFlag(&a.streams, nil), "stream", "`stream` to subscribe to; repeat for several")
	fs.StringVar(&a.lastID, "last-event-id", "", "resume after this event `id`")
	fs.StringVar(&a.format, "format", "", "frame `format`: data, envelope or cloudevents; none means the bridge's default, data")
	fs.BoolVar(&a.raw, "raw", false, "print frames in SSE form instead of one line each")
	fs.IntVar(&a.count, "count", 0, "exit after this many `frames` (0: never)")
	fs.BoolVar(&a.grpc, "grpc", false, "subscribe with the gRPC Subscribe call at --addr instead of /events")
	fs.StringVar(&a.addr, "addr", "localhost:50051", "gRPC `address` of the bridge, with --grpc")
	fs.BoolVar(&a.reconnect, "reconnect", true, "reconnect with the last id when the bridge ends the stream (--reconnect=false to exit instead)")
	a.auth.register(fs)
	return clientCmdLine("bridge tail", tailUsage, fs,
		flagGroup{title: "Subscription", flags: []string{"stream", "last-event-id", "format"}},
		flagGroup{title: "Output", flags: []string{"raw", "count"}},
		flagGroup{title: "Connection", flags: []string{"url", "grpc", "addr", "reconnect"}})
}

// runTail is `bridge tail`.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a tailArgs
	cmd := newTailCmdLine(&a)
	if err := cmd.parse(args); errors.Is(err, flag.ErrHelp) {
		cmd.printHelp(stdout)
		return nil
	} else if err != nil {
		return err
	}
	if len(a.streams) == 0 || cmd.fs.NArg() > 0 {
		return cmd.mistake("give at least one --stream and no other arguments", boolValueHint(cmd.fs, args))
	}
	u, err := url.Parse(strings.TrimSuffix(a.base, "/") + "/events")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return exitf(exitUsage, "--url %q: give the bridge's base URL, like http://localhost:8080", a.base)
	}
	q := url.Values{"stream": a.streams}
	if a.format != "" {
		q.Set("format", a.format)
	}
	u.RawQuery = q.Encode()
	client, token, done, err := a.auth.httpClient(u, stderr)
	if err != nil {
		return err
	}
	defer done()

	t := &tailer{url: u.String(), client: client, token: token, lastID: a.lastID, raw: a.raw, count: a.count, out: stdout}
	if a.grpc {
		if a.raw {
			return cmd.mistake("--raw prints SSE as the bridge sends it: it does not go with --grpc", "")
		}
		conn, _, err := dialBridge(a.addr, &a.auth, stderr)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		t.sub = bridgev1.NewBridgeServiceClient(conn)
		t.streams, t.format = a.streams, a.format
	}
	for attempt := 0; ; attempt++ {
		err := t.once(ctx)
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: a normal way to stop
		case errors.Is(err, errEnough):
			return nil
		case err != nil && (attempt == 0 || !a.reconnect):
			return err // the first connection failed: say so
		case err == nil && !a.reconnect:
			return exitf(exitStreamEnd, "the bridge ended the stream after id %q", t.lastID)
		}
		var ee *exitError
		if errors.As(err, &ee) && ee.code == exitRefused {
			return err // a retry would be refused again
		}
		fmt.Fprintf(stderr, "bridge tail: stream ended (%v); reconnecting after id %q\n", err, t.lastID)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

var errEnough = errors.New("printed --count frames")

type tailer struct {
	url     string
	client  *http.Client
	token   string // sent as Authorization: Bearer; none when empty
	lastID  string
	raw     bool
	count   int
	printed int
	out     io.Writer
	// sub, with --grpc, is the bridge's gRPC client: once subscribes with
	// Subscribe to streams in format instead of GET url.
	sub     bridgev1.BridgeServiceClient
	streams []string
	format  string
}

// once runs one subscription until the stream ends. It returns nil when the
// bridge ended the stream, errEnough after --count frames.
func (t *tailer) once(ctx context.Context) error {
	if t.sub != nil {
		return t.onceGRPC(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return exitf(exitUsage, "%w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if t.lastID != "" {
		req.Header.Set("Last-Event-ID", t.lastID)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return exitf(exitConnect, "connect: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return exitf(exitRefused, "the bridge answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if t.raw {
		return t.copyRaw(ctx, resp.Body)
	}
	for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 16 << 20}) {
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return exitf(exitConnect, "read: %w", err)
		}
		t.print(ev)
		if t.count > 0 && t.printed >= t.count {
			return errEnough
		}
	}
	return nil
}

// copyRaw copies the stream to the output byte for byte, as the bridge
// sent it (retry:, comments, field order and all), reading just enough of
// it to follow the last event id and count the frames that carry data.
func (t *tailer) copyRaw(ctx context.Context, body io.Reader) error {
	br := bufio.NewReaderSize(body, 64<<10)
	hasData := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: copy it through in pieces.
			_, _ = t.out.Write(line)
			hasData = hasData || bytes.HasPrefix(line, []byte("data:"))
			continue
		}
		if len(line) > 0 {
			_, _ = t.out.Write(line)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return exitf(exitConnect, "read: %w", err)
		}
		field := bytes.TrimRight(line, "\r\n")
		switch {
		case len(field) == 0: // the end of a frame
			if hasData {
				t.printed++
				if t.count > 0 && t.printed >= t.count {
					return errEnough
				}
			}
			hasData = false
		case bytes.HasPrefix(field, []byte("data:")):
			hasData = true
		case bytes.HasPrefix(field, []byte("id:")):
			t.lastID = strings.TrimPrefix(string(field[len("id:"):]), " ")
		}
	}
}

func (t *tailer) print(ev gosse.Event) {
	t.lastID = ev.LastEventID
	t.printed++
	name := ev.Type
	if name == "" {
		name = "message"
	}
	fmt.Fprintf(t.out, "%s\t%s\t%s\n", ev.LastEventID, name, ev.Data)
}

// onceGRPC is once with the gRPC Subscribe call.
func (t *tailer) onceGRPC(ctx context.Context) error {
	req := &bridgev1.SubscribeRequest{Streams: t.streams, Format: t.format}
	if t.lastID != "" {
		after, err := strconv.ParseUint(t.lastID, 10, 64)
		if err != nil {
			return exitf(exitUsage, "--last-event-id %q: give an event id", t.lastID)
		}
		req.AfterId = &after
	}
	stream, err := t.sub.Subscribe(ctx, req)
	if err != nil {
		return exitf(exitConnect, "connect: %w", err)
	}
	for {
		m, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF), ctx.Err() != nil:
			return nil
		case err != nil:
			code := exitConnect
			switch status.Code(err) {
			case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied:
				code = exitRefused
			}
			return exitf(code, "the bridge ended the subscription: %w", err)
		}
		t.print(gosse.Event{LastEventID: strconv.FormatUint(m.GetId(), 10), Type: m.GetType(), Data: m.GetData()})
		if t.count > 0 && t.printed >= t.count {
			return errEnough
		}
	}
}
