package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// History is what a page (or a service) reads before it subscribes: the
// last events of a stream, or those after an id, and the id live events
// continue from. That id is the engine's head when it read history
// (Replay.Head), or, for a page cut short by the limit, the last id of the
// page: history covered every event of the stream up to it, so a
// subscription that resumes after it gets each later event once, and none
// of those already read.

// defaultHistoryLimit is how many events a history read without a limit
// returns (at most --max-replay).
const defaultHistoryLimit = 100

// History implements bridge.v1.BridgeService.History; see the proto for its
// contract.
func (rs *readService) History(ctx context.Context, req *bridgev1.HistoryRequest) (*bridgev1.HistoryResponse, error) {
	streams, err := rs.checkStreams([]string{req.GetStream()})
	if err != nil {
		return nil, err
	}
	format, known := parseFormat(req.GetFormat())
	if !known {
		return nil, status.Errorf(codes.InvalidArgument, "format %q is unknown: use data (the default), envelope or cloudevents", req.GetFormat())
	}
	limit, err := rs.historyLimit(uint64(req.GetLimit()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if _, _, _, err := rs.authorize(ctx, streams); err != nil {
		return nil, err
	}
	return rs.history(ctx, streams[0], limit, req.AfterId, format)
}

// historyLimit applies the default and the bound (--max-replay; none when
// that is off) to a requested limit.
func (rs *readService) historyLimit(asked uint64) (int, error) {
	most := rs.hub.replayLimit
	switch {
	case asked == 0 && most > 0:
		return min(defaultHistoryLimit, most), nil
	case asked == 0:
		return defaultHistoryLimit, nil
	case most > 0 && asked > uint64(most):
		return 0, errHistoryLimit(asked, most)
	}
	return int(min(asked, 1<<31-1)), nil
}

// history reads a page of stream's history: the last limit events, or with
// after the first limit events after it.
func (rs *readService) history(ctx context.Context, stream string, limit int, after *uint64, format Format) (*bridgev1.HistoryResponse, error) {
	var r Replay
	var err error
	if after == nil {
		r, err = rs.hub.engine.Latest(ctx, stream, limit)
	} else {
		r, err = rs.hub.engine.Replay(ctx, []string{stream}, *after, rs.hub.replayLimit)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		rs.log.Warn("read history", "stream", stream, "err", err)
		return nil, status.Error(codes.Unavailable, "history cannot be read right now: retry later")
	}
	res := &bridgev1.HistoryResponse{LastEventId: r.Head}
	if r.Reset != "" {
		res.BridgeReset = &bridgev1.Reset{Reason: r.Reset, LastEventId: r.Head}
		return res, nil
	}
	events := r.Events
	if len(events) > limit {
		// A page: continue after its last event, not after the head, so
		// the events after it come with the next page or live.
		events = events[:limit]
		res.More = true
		res.LastEventId = events[limit-1].ID
	}
	res.Events = make([]*bridgev1.HistoryEvent, len(events))
	for i, ev := range events {
		res.Events[i] = &bridgev1.HistoryEvent{
			Id:     ev.ID,
			Stream: ev.Stream,
			Type:   ev.Type,
			Time:   timestamppb.New(ev.Time),
			Data:   string(ev.frame(format, rs.hub.ce).Data),
		}
	}
	return res, nil
}

// historyHandler serves GET /history?stream=NAME[&limit=N][&after=ID][&format=F]
// as JSON (historyJSON), with /events' CORS and auth: the same token, from
// the same places, grants the same streams.
type historyHandler struct {
	rs     *readService
	events *sseHandler // its CORS policy and authorize
}

// historyJSON is the body of a GET /history answer. Ids are strings, as in
// a bridge.reset frame: JavaScript numbers cannot hold every uint64.
type historyJSON struct {
	Events      []historyEventJSON `json:"events"`
	LastEventID string             `json:"lastEventId"`
	More        bool               `json:"more,omitempty"`
	Reset       *resetJSON         `json:"reset,omitempty"`
}

type historyEventJSON struct {
	ID     string          `json:"id"`
	Stream string          `json:"stream"`
	Type   string          `json:"type,omitempty"`
	Time   string          `json:"time"`
	Data   json.RawMessage `json:"data"` // the frame's data, as is
}

type resetJSON struct {
	Reason      string `json:"reason"`
	LastEventID string `json:"lastEventId"`
}

func (h *historyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.events
	w.Header().Set("Cache-Control", "no-store")
	origin := r.Header.Get("Origin")
	s.cors.apply(w.Header(), origin)
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		s.cors.preflight(w, r)
		return
	default:
		w.Header().Set("Allow", "GET, OPTIONS")
		http.Error(w, "use GET to read /history", http.StatusMethodNotAllowed)
		return
	}
	if s.auth != nil && !s.cors.allowed(origin, r.Host) {
		http.Error(w, fmt.Sprintf("origin %q may not read: add it to --cors-origins", origin), http.StatusForbidden)
		return
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "malformed query string: "+err.Error(), http.StatusBadRequest)
		return
	}
	if query.Has("access_token") {
		r = stripQueryToken(r, query)
	}
	req, err := parseHistoryQuery(query)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	streams, err := h.rs.checkStreams([]string{req.stream})
	if err != nil {
		http.Error(w, status.Convert(err).Message(), http.StatusBadRequest)
		return
	}
	limit, err := h.rs.historyLimit(req.limit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The same rate and places as a connect, given back at once: a read
	// costs an engine request, and a flood of them must be shed too.
	release, reason := s.limits.admit(addrKey(s.proxies.clientIP(r)))
	if reason != "" {
		s.metrics.rejected(reason)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests ("+reason+"): retry later", http.StatusServiceUnavailable)
		return
	}
	defer release()
	if s.auth != nil {
		if _, ok := s.authorize(w, r, query, streams); !ok {
			return
		}
	}
	res, err := h.rs.history(r.Context(), streams[0], limit, req.after, req.format)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, status.Convert(err).Message(), http.StatusServiceUnavailable)
		return
	}
	body := historyJSON{Events: make([]historyEventJSON, len(res.GetEvents())), LastEventID: strconv.FormatUint(res.GetLastEventId(), 10), More: res.GetMore()}
	for i, ev := range res.GetEvents() {
		body.Events[i] = historyEventJSON{
			ID: strconv.FormatUint(ev.GetId(), 10), Stream: ev.GetStream(), Type: ev.GetType(),
			Time: ev.GetTime().AsTime().UTC().Format("2006-01-02T15:04:05.999999999Z07:00"), Data: json.RawMessage(ev.GetData()),
		}
	}
	if rr := res.GetBridgeReset(); rr != nil {
		body.Reset = &resetJSON{Reason: rr.GetReason(), LastEventID: strconv.FormatUint(rr.GetLastEventId(), 10)}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body) //nolint:errchkjson // the client may have gone; nothing to do then
}

// historyQuery is a parsed GET /history query.
type historyQuery struct {
	stream string
	limit  uint64
	after  *uint64
	format Format
}

// parseHistoryQuery reads stream (exactly one), limit, after and format.
func parseHistoryQuery(q url.Values) (historyQuery, error) {
	var hq historyQuery
	if len(q["stream"]) != 1 {
		return hq, errors.New("give exactly one stream: /history?stream=NAME")
	}
	hq.stream = q.Get("stream")
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return hq, fmt.Errorf("limit %q is not a number of events", v)
		}
		hq.limit = n
	}
	if q.Has("after") {
		id, ok := parseEventID(q.Get("after"))
		if !ok {
			return hq, fmt.Errorf("after %q is not an event id: give the id of an event, such as a lastEventId", q.Get("after"))
		}
		hq.after = &id
	}
	f, known := parseFormat(q.Get("format"))
	if !known {
		return hq, fmt.Errorf("format %q is unknown: use data (the default), envelope or cloudevents", q.Get("format"))
	}
	hq.format = f
	return hq, nil
}
