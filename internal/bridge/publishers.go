package bridge

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// The publishers file (--publishers) lists who may call Publish:
//
//	{"publishers": [
//	  {"name": "orders-service", "token_sha256": "<64 hex digits>", "streams": ["orders", "orders.>"], "rate": 200},
//	  {"name": "billing", "cert": "spiffe://acme.example/billing", "streams": ["billing.>"], "rate": 50, "burst": 500}
//	]}
//
// Each entry has a unique name (it appears in logs and error messages) and
// exactly one credential: token_sha256, the hex SHA-256 of a bearer token
// (the token itself is never stored), or cert, the principal of a client
// certificate (see certPrincipal). streams are grant patterns (grants.go);
// read, optional, are the patterns of the streams its credential may also
// read over gRPC (Subscribe, History): none by default.
// rate, when set, is events per second for that publisher, with a bucket of
// burst events; burst defaults to one second's worth (at least 1). Unknown
// fields are errors, so a misspelt "token_sha265" is not silently ignored.

// publisherFileJSON is the file's shape.
type publisherFileJSON struct {
	Publishers *[]publisherJSON `json:"publishers"`
}

type publisherJSON struct {
	Name        string   `json:"name"`
	TokenSHA256 string   `json:"token_sha256"`
	Cert        string   `json:"cert"`
	Streams     []string `json:"streams"`
	Read        []string `json:"read"`
	Rate        float64  `json:"rate"`
	Burst       int      `json:"burst"`
}

// maxPublisherName bounds names, which go into messages and logs.
const maxPublisherName = 128

// publisher is one entry of the file. Immutable once loaded, except for its
// limiter, which is safe for concurrent use.
type publisher struct {
	name     string
	token    [sha256.Size]byte // SHA-256 of the token; zero for a cert entry
	hasToken bool
	cert     string
	streams  grantSet
	// read are the streams the publisher may also read (Subscribe,
	// History, with its credential); none unless the file says so.
	read    grantSet
	rate    rate.Limit // 0: no limit
	burst   int
	limiter *rate.Limiter // nil: no limit
	// expires is when a JWT publisher's token (--publisher-jwt) stops
	// verifying: its exp plus --jwt-leeway. Zero for an entry of the file,
	// which lasts until a reload drops it.
	expires time.Time
}

// publisherSet is one loaded version of the file. Immutable but for
// replaced, which reload closes once a newer version is in force: a
// long-lived read authorized by this version (Subscribe) waits on it to
// check its credential again.
type publisherSet struct {
	list     []*publisher
	certs    map[string]*publisher
	replaced chan struct{}
}

// byToken returns the publisher whose token hashes to the SHA-256 of token,
// or nil. Every entry is compared, in constant time and with no early exit,
// so neither the time taken nor anything else tells which entry (if any)
// came close.
func (s *publisherSet) byToken(token string) *publisher {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i, p := range s.list {
		eq := subtle.ConstantTimeCompare(sum[:], p.token[:]) & btoi(p.hasToken)
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil
	}
	return s.list[found]
}

// byCert returns the publisher of a client certificate principal, or nil.
func (s *publisherSet) byCert(principal string) *publisher {
	return s.certs[principal]
}

// publishers is the --publishers file: the version in force, and reloads.
// Safe for concurrent use.
type publishers struct {
	file string
	mu   sync.Mutex // serializes reloads
	cur  atomic.Pointer[publisherSet]
}

// loadPublishers reads file; nil, nil when file is empty (no publishers).
func loadPublishers(file string) (*publishers, error) {
	if file == "" {
		return nil, nil
	}
	set, err := readPublishers(file)
	if err != nil {
		return nil, err
	}
	p := &publishers{file: file}
	p.cur.Store(set)
	return p, nil
}

// current returns the version in force.
func (p *publishers) current() *publisherSet { return p.cur.Load() }

// reload reads the file again and puts it in force; on error the version in
// force stays. A publisher whose name, rate and burst are unchanged keeps its
// limiter, so a reload neither refills nor empties its bucket.
func (p *publishers) reload() (*publisherSet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set, err := readPublishers(p.file)
	if err != nil {
		return nil, err
	}
	old := map[string]*publisher{}
	for _, o := range p.cur.Load().list {
		old[o.name] = o
	}
	for _, n := range set.list {
		if o := old[n.name]; o != nil && o.limiter != nil && o.rate == n.rate && o.burst == n.burst {
			n.limiter = o.limiter
		}
	}
	close(p.cur.Swap(set).replaced)
	return set, nil
}

// readPublishers reads and checks a publishers file. The error names the
// file, and the entry (by position and name) of every problem found.
func readPublishers(file string) (*publisherSet, error) {
	raw, err := os.ReadFile(file) //nolint:gosec // the operator names the file on the command line
	if err != nil {
		return nil, fmt.Errorf("publishers file: %w", err)
	}
	set, err := parsePublishers(raw)
	if err != nil {
		return nil, fmt.Errorf("publishers file %s: %w", file, err)
	}
	return set, nil
}

func parsePublishers(raw []byte) (*publisherSet, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var f publisherFileJSON
	if err := dec.Decode(&f); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			err = fmt.Errorf("%w at byte %d", err, syntax.Offset)
		}
		return nil, fmt.Errorf("not valid: %w; the file is a JSON object, {\"publishers\": [{\"name\": ..., \"token_sha256\": ... or \"cert\": ..., \"streams\": [...]}]}", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not valid: data after the JSON object")
	}
	if f.Publishers == nil {
		return nil, errors.New("no \"publishers\" list: the file is {\"publishers\": [...]}")
	}
	set := &publisherSet{certs: map[string]*publisher{}, replaced: make(chan struct{})}
	var errs []error
	names := map[string]int{}
	tokens := map[[sha256.Size]byte]int{}
	for i, e := range *f.Publishers {
		entry := fmt.Sprintf("entry %d", i+1)
		if e.Name != "" {
			entry += fmt.Sprintf(" (%q)", e.Name)
		}
		p, entryErrs := parsePublisher(e)
		for _, err := range entryErrs {
			errs = append(errs, fmt.Errorf("%s: %w", entry, err))
		}
		if p == nil {
			continue
		}
		if j, dup := names[p.name]; dup {
			errs = append(errs, fmt.Errorf("%s: name %q is also the name of entry %d: names must be unique", entry, p.name, j))
		}
		names[p.name] = i + 1
		if p.hasToken {
			if j, dup := tokens[p.token]; dup {
				errs = append(errs, fmt.Errorf("%s: token_sha256 is also the token of entry %d: give each publisher its own token", entry, j))
			}
			tokens[p.token] = i + 1
		} else {
			if q := set.certs[p.cert]; q != nil {
				errs = append(errs, fmt.Errorf("%s: cert %q is also the cert of %q: a principal may appear once", entry, p.cert, q.name))
			}
			set.certs[p.cert] = p
		}
		set.list = append(set.list, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// parsePublisher checks one entry; p is nil when the entry is unusable.
func parsePublisher(e publisherJSON) (p *publisher, errs []error) {
	switch {
	case e.Name == "":
		errs = append(errs, errors.New("no name: give each publisher a name, used in logs and error messages"))
	case len(e.Name) > maxPublisherName || strings.ContainsFunc(e.Name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		errs = append(errs, fmt.Errorf("name must be at most %d bytes with no control character", maxPublisherName))
	}
	p = &publisher{name: e.Name, cert: e.Cert}
	switch {
	case e.TokenSHA256 == "" && e.Cert == "":
		errs = append(errs, errors.New("no credential: give token_sha256 (the hex SHA-256 of a bearer token) or cert (a client certificate principal)"))
	case e.TokenSHA256 != "" && e.Cert != "":
		errs = append(errs, errors.New("both token_sha256 and cert: give one; list the publisher twice, under two names, to accept both"))
	case e.TokenSHA256 != "":
		sum, err := hex.DecodeString(e.TokenSHA256)
		if err != nil || len(sum) != sha256.Size {
			got := fmt.Sprintf("%d characters", len(e.TokenSHA256))
			if strings.Trim(e.TokenSHA256, "0123456789abcdefABCDEF") != "" {
				got += " that are not all hex digits"
			}
			errs = append(errs, fmt.Errorf("token_sha256 must be 64 hex digits, the SHA-256 of the token (printf %%s \"$TOKEN\" | sha256sum, or bridge hash-token), got %s", got))
		}
		copy(p.token[:], sum)
		p.hasToken = true
	}
	if len(e.Streams) == 0 {
		errs = append(errs, errors.New("no streams: list the stream patterns this publisher may publish to"))
	}
	for _, s := range e.Streams {
		if !validPattern(s) {
			errs = append(errs, fmt.Errorf("stream pattern %q is invalid: tokens of letters, digits, '_' and '-' separated by dots, '*' for one token, '>' last for the rest", s))
		}
	}
	p.streams = grantSet(e.Streams)
	for _, s := range e.Read {
		if !validPattern(s) {
			errs = append(errs, fmt.Errorf("read pattern %q is invalid: tokens of letters, digits, '_' and '-' separated by dots, '*' for one token, '>' last for the rest", s))
		}
	}
	p.read = grantSet(e.Read)
	switch {
	case e.Rate < 0 || math.IsNaN(e.Rate) || math.IsInf(e.Rate, 0):
		errs = append(errs, fmt.Errorf("rate must be events per second, at least 0 (0: no limit), got %v", e.Rate))
	case e.Burst < 0:
		errs = append(errs, fmt.Errorf("burst must not be negative, got %d", e.Burst))
	case e.Burst > 0 && e.Rate == 0:
		errs = append(errs, errors.New("burst without rate: set rate (events per second) too, or leave both out for no limit"))
	case e.Rate > 0:
		p.rate = rate.Limit(e.Rate)
		p.burst = e.Burst
		if p.burst == 0 {
			// One second's worth: a publisher may send a second's events at
			// once after a quiet second, and never more.
			p.burst = max(1, int(math.Min(math.Ceil(e.Rate), math.MaxInt32)))
		}
		p.limiter = rate.NewLimiter(p.rate, p.burst)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}
