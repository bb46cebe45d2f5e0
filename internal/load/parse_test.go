package load

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

type parsed struct {
	ID, Type, Data string
}

// parseAll reads every event of r; err is the parser's final error.
func parseAll(r io.Reader, size int) (events []parsed, comments, retry int64, err error) {
	p := NewParser(r, size, 1<<16)
	for {
		ev, err := p.Next()
		if err != nil {
			return events, p.Comments, p.Retry, err
		}
		events = append(events, parsed{string(ev.ID), string(ev.Type), string(ev.Data)})
	}
}

func TestParser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       string
		want     []parsed
		comments int64
		retry    int64
	}{
		{
			name: "a bridge frame",
			in:   "id: 17\ndata: {\"a\":1}\nevent: shop.v1.OrderCreated\n\n",
			want: []parsed{{"17", "shop.v1.OrderCreated", `{"a":1}`}},
		},
		{
			name: "line ends LF, CRLF and CR",
			in:   "data: a\r\ndata: b\rdata: c\n\r\nid: 2\rdata: d\r\r",
			want: []parsed{{"", "", "a\nb\nc"}, {"2", "", "d"}},
		},
		{
			name: "only the first space after the colon is dropped",
			in:   "data:x\ndata:  y\ndata\n\n",
			want: []parsed{{"", "", "x\n y\n"}},
		},
		{
			name: "the id persists and an event without data is not dispatched",
			in:   "id: 1\ndata: a\n\nid: 2\nevent: ignored\n\ndata: b\n\n",
			want: []parsed{{"1", "", "a"}, {"2", "", "b"}},
		},
		{
			name: "an id with NUL is ignored, an empty id clears",
			in:   "id: 5\ndata: a\n\nid: 6\x007\ndata: b\n\nid\ndata: c\n\n",
			want: []parsed{{"5", "", "a"}, {"5", "", "b"}, {"", "", "c"}},
		},
		{
			name:     "comments, retry and unknown fields",
			in:       ": ping\n\n:\nretry: 250\nretry: x\nfoo: bar\ndata: a\n\n",
			want:     []parsed{{"", "", "a"}},
			comments: 2,
			retry:    250,
		},
		{
			name: "an empty data line is an event with empty data",
			in:   "data:\n\n",
			want: []parsed{{"", "", ""}},
		},
		{
			name: "a byte order mark at the start is skipped",
			in:   "\xEF\xBB\xBFdata: a\n\n",
			want: []parsed{{"", "", "a"}},
		},
		{
			name: "an incomplete event at the end is discarded",
			in:   "data: a\n\ndata: b\n",
			want: []parsed{{"", "", "a"}},
		},
		{
			name: "an incomplete line at the end is discarded",
			in:   "data: a\n\ndata: b",
			want: []parsed{{"", "", "a"}},
		},
	}
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"halves":   func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for rname, reader := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				t.Parallel()
				got, comments, retry, err := parseAll(reader(tt.in), 64)
				if !errors.Is(err, io.EOF) {
					t.Errorf("final error = %v, want io.EOF", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				if comments != tt.comments {
					t.Errorf("comments = %d, want %d", comments, tt.comments)
				}
				want := tt.retry
				if want == 0 {
					want = -1
				}
				if retry != want {
					t.Errorf("retry = %d, want %d", retry, want)
				}
			})
		}
	}
}

func TestParserLongLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	got, _, _, err := parseAll(strings.NewReader("data: "+long+"\n\n"), 64)
	if !errors.Is(err, io.EOF) || len(got) != 1 || got[0].Data != long {
		t.Errorf("a line 16 times the buffer: got %d events, err %v; want the line and EOF", len(got), err)
	}
	p := NewParser(strings.NewReader("data: "+long+"\n\n"), 64, 512)
	if _, err := p.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("a line over the limit: err = %v, want ErrLineTooLong", err)
	}
}

func TestParserResetKeepsLastEventID(t *testing.T) {
	t.Parallel()
	p := NewParser(strings.NewReader("id: 7\ndata: a\n\nid: 8\ndata: b"), 64, 1024)
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want EOF", err)
	}
	// Event 8 was never dispatched: a browser resumes after 7.
	if got := string(p.LastEventID()); got != "7" {
		t.Errorf("LastEventID() = %q, want 7", got)
	}
	p.Reset(strings.NewReader("data: c\n\n"))
	ev, err := p.Next()
	if err != nil || string(ev.ID) != "7" || string(ev.Data) != "c" {
		t.Errorf("after Reset: %q %q %v, want id 7 data c", ev.ID, ev.Data, err)
	}
}

func TestParserPassesReadErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\n"), iotest.ErrReader(boom))
	got, _, _, err := parseAll(r, 64)
	if len(got) != 1 || !errors.Is(err, boom) {
		t.Errorf("got %v, %v; want one event, then the reader's error", got, err)
	}
}

// FuzzParser checks that how the input is split into reads never changes
// what is parsed.
func FuzzParser(f *testing.F) {
	f.Add([]byte("id: 1\ndata: a\r\n\r: c\rdata:b\n\n"))
	f.Add([]byte("\xEF\xBB\xBFdata\r\r\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wc, wr, werr := parseAll(bytes.NewReader(in), 64)
		got, gc, gr, gerr := parseAll(iotest.OneByteReader(bytes.NewReader(in)), 64)
		if diff := cmp.Diff(want, got); diff != "" || wc != gc || wr != gr || !errors.Is(gerr, werr) {
			t.Errorf("one byte at a time differs (-whole +bytes):\n%s\ncomments %d/%d retry %d/%d err %v/%v", diff, wc, gc, wr, gr, werr, gerr)
		}
	})
}

func BenchmarkParser(b *testing.B) {
	frame := "id: 1795633221073629\ndata: " + string(appendPayload(nil, 41, 1795633221073629000, 128)) + "\n\n"
	in := strings.Repeat(frame, 1000)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	r := strings.NewReader(in)
	p := NewParser(r, readBufSize, maxLine)
	for b.Loop() {
		r.Reset(in)
		p.Reset(r)
		for {
			ev, err := p.Next()
			if err != nil {
				break
			}
			if _, _, ok := parsePayload(ev.Data); !ok {
				b.Fatal("payload not parsed")
			}
		}
	}
}
