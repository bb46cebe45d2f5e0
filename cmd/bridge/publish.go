package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/payload"
)

const publishUsage = `Usage: bridge publish [flags] --stream NAME PAYLOAD
       bridge publish [flags] [--stream NAME] < events.ndjson

Publishes one event and prints its id. PAYLOAD is JSON (or - to read it from
stdin): a JSON value is sent as a json event; an object with "@type" is a typed
event in protojson form, for example
  {"@type":"type.googleapis.com/shop.v1.OrderCreated","orderId":"o-1"}
Its type is looked up in the bridge's own types, then through the bridge's
server reflection, so types loaded from descriptor sets work too.

Without PAYLOAD it reads events from stdin, one per line, and sends them
through one PublishStream: with --stream each line is a PAYLOAD as above;
without, each line is a PublishRequest in its JSON form, for example
  {"stream":"orders","type":"note","json":{"n":1},"idempotencyKey":"k-1"}
It prints one line per event, in input order: the id (and " duplicate"
when the idempotency key named an event already stored), or "line N: "
and why it failed; blank lines are skipped. --timeout bounds the wait
for each event's result.

A bridge with publisher auth wants a token (--token-file, --token, or the
environment variable BRIDGE_TOKEN) or a client certificate (--cert, --key);
--ca, --cert or --key connect with TLS.

Exit status: 0 published (every line); 1 bad flags or payload (a line that
is not an event); 2 the bridge could not be reached (or the stream broke);
3 the bridge refused the event (a line; its message says why: a missing or
bad credential, a stream not granted, over the publisher's rate, ...).
`

// publishArgs are the settings of `bridge publish`, from its flags.
type publishArgs struct {
	addr, stream, typ string
	timeout           time.Duration
	maxPayload        int
	auth              clientAuth
}

// newPublishCmdLine defines the flags of `bridge publish`, which set a.
func newPublishCmdLine(a *publishArgs) *cmdLine {
	fs := flag.NewFlagSet("bridge publish", flag.ContinueOnError)
	fs.StringVar(&a.addr, "addr", "localhost:50051", "gRPC `address` of the bridge")
	fs.StringVar(&a.stream, "stream", "", "`stream` to publish to (required with PAYLOAD; reading stdin, each line is then a payload for it)")
	fs.StringVar(&a.typ, "type", "", "SSE event `name`; none means a typed event's message name, and no event: line for json")
	fs.DurationVar(&a.timeout, "timeout", 10*time.Second, "deadline of the whole call (a `duration`); reading stdin, of each event's result")
	fs.IntVar(&a.maxPayload, "max-payload", bridge.DefaultConfig().MaxPayload, "the bridge's --max-payload, in `bytes`: a larger payload is refused here, before it is sent")
	a.auth.register(fs)
	return clientCmdLine("bridge publish", publishUsage, fs,
		flagGroup{title: "Event", flags: []string{"stream", "type", "max-payload"}},
		flagGroup{title: "Connection", flags: []string{"addr", "timeout"}})
}

// runPublish is `bridge publish`.
func runPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var a publishArgs
	cmd := newPublishCmdLine(&a)
	if err := cmd.parse(args); errors.Is(err, flag.ErrHelp) {
		cmd.printHelp(stdout)
		return nil
	} else if err != nil {
		return err
	}
	fs := cmd.fs
	if fs.NArg() == 0 {
		return runPublishLines(ctx, &a, stdin, stdout, stderr)
	}
	if fs.NArg() != 1 || a.stream == "" {
		return cmd.mistake("give --stream and exactly one PAYLOAD argument (or none, to read one event per line from stdin)", "")
	}
	payload := []byte(fs.Arg(0))
	if fs.Arg(0) == "-" {
		var err error
		if payload, err = io.ReadAll(stdin); err != nil {
			return exitf(exitUsage, "read payload from stdin: %w", err)
		}
	}

	if err := checkPayloadSize(payload, a.maxPayload); err != nil {
		return err
	}

	conn, anonymous, err := dialBridge(a.addr, &a.auth, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	id, err := publishPayload(ctx, conn, &bridgev1.PublishRequest{Stream: a.stream, Type: a.typ}, payload)
	if err != nil {
		if anonymous && status.Code(err) == codes.Unauthenticated {
			return exitf(exitRefused, "%w; %w", err, errNoToken)
		}
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

// runPublishLines is `bridge publish` without a PAYLOAD: events from
// stdin, one per line (publishLines). Its error says how many lines
// failed; its exit status is 2 when the bridge could not be reached or the
// stream broke, else 3 when the bridge refused a line, else 1 when a line
// was not an event.
func runPublishLines(ctx context.Context, a *publishArgs, stdin io.Reader, stdout, stderr io.Writer) error {
	conn, anonymous, err := dialBridge(a.addr, &a.auth, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	out, err := publishLines(ctx, conn, a, stdin, stdout)
	switch {
	case err != nil && anonymous && status.Code(err) == codes.Unauthenticated:
		return exitf(exitRefused, "%w; %w", err, errNoToken)
	case err != nil:
		return err
	case out.refused > 0:
		return exitf(exitRefused, "%d of %d lines refused by the bridge, %d not events", out.refused, out.total, out.bad)
	case out.bad > 0:
		return exitf(exitUsage, "%d of %d lines not events", out.bad, out.total)
	}
	return nil
}

// dialBridge makes the client connection of `bridge publish`: TLS when any of
// --ca, --cert, --key is set, and the token on every call when there is one.
// anonymous reports that the calls carry no credential at all.
func dialBridge(addr string, auth *clientAuth, stderr io.Writer) (conn *grpc.ClientConn, anonymous bool, err error) {
	token, err := auth.bearer(os.LookupEnv)
	if err != nil {
		return nil, false, err
	}
	tlsCfg, err := auth.tlsConfig()
	if err != nil {
		return nil, false, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if tlsCfg != nil {
		opts[0] = grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds(token)))
		if tlsCfg == nil {
			warnPlaintext(stderr, addr)
		}
	}
	conn, err = grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, false, exitf(exitUsage, "address %q: %w", addr, err)
	}
	return conn, token == "" && (tlsCfg == nil || len(tlsCfg.Certificates) == 0), nil
}

// publishPayload completes req with payload (JSON, or a typed event in
// protojson form) and publishes it, returning the event's id.
func publishPayload(ctx context.Context, conn *grpc.ClientConn, req *bridgev1.PublishRequest, payload []byte) (uint64, error) {
	if typeURL, typed, err := peekType(payload); err != nil {
		return 0, exitf(exitUsage, "payload is not JSON: %w", err)
	} else if typed {
		event, err := typedEvent(ctx, conn, typeURL, payload)
		if err != nil {
			return 0, err
		}
		req.Payload = &bridgev1.PublishRequest_Event{Event: event}
	} else {
		var v structpb.Value
		if err := protojson.Unmarshal(payload, &v); err != nil {
			return 0, exitf(exitUsage, "payload is not JSON: %w", err)
		}
		req.Payload = &bridgev1.PublishRequest_Json{Json: &v}
	}
	res, err := bridgev1.NewBridgeServiceClient(conn).Publish(ctx, req)
	if err != nil {
		return 0, rpcError(conn.Target(), err)
	}
	return res.GetId(), nil
}

// checkPayloadSize refuses a payload whose JSON is over limit bytes (the
// bridge's --max-payload), before anything is sent: the bridge would refuse
// it too, and far over the limit only with its transport's
// ResourceExhausted. The JSON is measured compacted, as the bridge renders
// it; limit 0 or less checks nothing.
func checkPayloadSize(payload []byte, limit int) error {
	if limit <= 0 || len(payload) <= limit {
		return nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, payload); err != nil || compact.Len() <= limit {
		return nil // not JSON (publishPayload says so), or within the limit once compacted
	}
	return exitf(exitUsage, "payload is %d bytes of JSON: the limit is %d (--max-payload, the bridge's own limit); send a smaller event, or a reference to the data", compact.Len(), limit)
}

// Transport errors that mean the two ends do not agree on TLS, as grpc-go
// words them.
const (
	plaintextToTLS = "error reading server preface"          // this client plaintext, the bridge TLS
	tlsToPlaintext = "first record does not look like a TLS" // this client TLS, the bridge plaintext
)

// rpcError classifies a failed call: the bridge unreachable, or refusing.
// The result still carries the call's status (status.Code works on it).
func rpcError(addr string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		msg := fmt.Sprintf("bridge at %s: %s: %s", addr, st.Code(), st.Message())
		switch {
		case strings.Contains(st.Message(), plaintextToTLS):
			msg += " (the bridge seems to speak TLS: connect with --ca FILE, the CA of its certificate)"
		case strings.Contains(st.Message(), tlsToPlaintext):
			msg += " (the bridge seems to speak plaintext gRPC: drop --ca, --cert and --key)"
		}
		return &exitError{code: exitConnect, err: &callError{msg, err}}
	default:
		return &exitError{code: exitRefused, err: &callError{fmt.Sprintf("bridge at %s refused the event: %s: %s", addr, st.Code(), st.Message()), err}}
	}
}

// callError is a failed call described for people, wrapping the call's
// error so its gRPC status stays readable.
type callError struct {
	msg string
	err error
}

func (e *callError) Error() string { return e.msg }
func (e *callError) Unwrap() error { return e.err }

// peekType reports whether payload is a JSON object with "@type", and its value.
func peekType(payload []byte) (typeURL string, typed bool, err error) {
	var probe any
	if err := json.Unmarshal(payload, &probe); err != nil {
		return "", false, err
	}
	obj, ok := probe.(map[string]any)
	if !ok {
		return "", false, nil
	}
	t, ok := obj["@type"].(string)
	return t, ok, nil
}

// typedEvent parses a protojson Any, resolving its type from the compiled-in
// types or, failing that, from the bridge's server reflection.
func typedEvent(ctx context.Context, conn *grpc.ClientConn, typeURL string, payload []byte) (*anypb.Any, error) {
	var resolver interface {
		protoregistry.MessageTypeResolver
		protoregistry.ExtensionTypeResolver
	} = protoregistry.GlobalTypes
	name := protoreflect.FullName(typeURL[strings.LastIndexByte(typeURL, '/')+1:])
	if _, err := protoregistry.GlobalTypes.FindMessageByName(name); err != nil {
		types, err := reflectTypes(ctx, conn, name)
		if err != nil {
			return nil, err
		}
		resolver = types
	}
	var event anypb.Any
	if err := (protojson.UnmarshalOptions{Resolver: resolver}).Unmarshal(payload, &event); err != nil {
		return nil, exitf(exitUsage, "payload is not a valid %s: %w", name, err)
	}
	return &event, nil
}

// reflectFiles asks the bridge's reflection service, on one stream, for the
// files defining names (and their imports) and returns their types. The
// service sends each file once per stream, so the answers together hold
// every file.
func reflectFiles(ctx context.Context, conn *grpc.ClientConn, names []protoreflect.FullName) (*payload.Registry, error) {
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, rpcError(conn.Target(), err)
	}
	defer func() { _ = stream.CloseSend() }()
	set := &descriptorpb.FileDescriptorSet{}
	for _, name := range names {
		if err := stream.Send(&reflectionv1.ServerReflectionRequest{
			MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: string(name)},
		}); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.Recv() // the status, as in reflectTypes
			}
			return nil, rpcError(conn.Target(), err)
		}
		res, err := stream.Recv()
		if err != nil {
			return nil, rpcError(conn.Target(), err)
		}
		if e := res.GetErrorResponse(); e != nil {
			return nil, exitf(exitRefused, "type %s is unknown to the reflection of the bridge at %s (%s)", name, conn.Target(), e.GetErrorMessage())
		}
		if err := appendFiles(set, res, conn.Target()); err != nil {
			return nil, err
		}
	}
	types, err := payload.NewRegistryFromSet("from the reflection of "+conn.Target(), set)
	if err != nil {
		return nil, exitf(exitConnect, "descriptors from the reflection of %s: %w", conn.Target(), err)
	}
	return types, nil
}

// appendFiles adds the files of a reflection answer to set.
func appendFiles(set *descriptorpb.FileDescriptorSet, res *reflectionv1.ServerReflectionResponse, target string) error {
	for _, raw := range res.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fdp := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fdp); err != nil {
			return exitf(exitConnect, "bridge at %s sent a bad descriptor: %w", target, err)
		}
		set.File = append(set.File, fdp)
	}
	return nil
}

// reflectTypes asks the bridge's reflection service for the file defining
// name (and its imports) and returns their types.
func reflectTypes(ctx context.Context, conn *grpc.ClientConn, name protoreflect.FullName) (*payload.Registry, error) {
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, rpcError(conn.Target(), err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: string(name)},
	}); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream (auth refused it, say): its status
			// comes with Recv, as grpc-go documents for SendMsg.
			_, err = stream.Recv()
		}
		return nil, rpcError(conn.Target(), err)
	}
	res, err := stream.Recv()
	if err != nil {
		return nil, rpcError(conn.Target(), err)
	}
	if e := res.GetErrorResponse(); e != nil {
		return nil, exitf(exitUsage, "type %s is unknown to the bridge at %s (%s): load its descriptor set there with --descriptor-set", name, conn.Target(), e.GetErrorMessage())
	}
	set := &descriptorpb.FileDescriptorSet{}
	if err := appendFiles(set, res, conn.Target()); err != nil {
		return nil, err
	}
	// Imports the answer leaves out are compiled in here (well-known types).
	types, err := payload.NewRegistryFromSet("from the reflection of "+conn.Target(), set)
	if err != nil {
		return nil, exitf(exitConnect, "descriptors of %s: %w", name, err)
	}
	if _, err := types.FindMessageByName(name); err != nil {
		return nil, exitf(exitUsage, "type %s: %w", name, err)
	}
	return types, nil
}
