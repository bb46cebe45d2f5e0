package bridge

import "strings"

// Grant patterns follow NATS subject rules, so a grant reads the same as the
// subject it maps to with --engine nats: '.' separates tokens, '*' matches
// exactly one token, '>' (last token only) matches one or more trailing
// tokens. "orders" grants that stream alone; "user.42.*" grants
// "user.42.cart" but not "user.42" or "user.42.cart.items"; "public.>"
// grants "public.news" and "public.news.eu" but not "public".

// validPattern reports whether p is a well-formed grant pattern: tokens of
// stream-name characters, or a whole-token '*', or a whole-token '>' last.
func validPattern(p string) bool {
	// No length limit here: a pattern only ever matches names that passed
	// the configured --max-stream-name where they came in.
	if p == "" {
		return false
	}
	toks := strings.Split(p, ".")
	for i, tok := range toks {
		switch tok {
		case "*":
		case ">":
			if i != len(toks)-1 {
				return false
			}
		default:
			if !validStreamSyntax(tok) {
				return false
			}
		}
	}
	return true
}

// matchPattern reports whether the grant pattern p covers the stream name s.
// An invalid pattern or name matches nothing.
func matchPattern(p, s string) bool {
	if !validPattern(p) || !validStreamSyntax(s) {
		return false
	}
	for {
		ptok, prest, pmore := strings.Cut(p, ".")
		if ptok == ">" {
			return true // s has at least this one token left
		}
		stok, srest, smore := strings.Cut(s, ".")
		if ptok != "*" && ptok != stok {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		p, s = prest, srest
	}
}

// grantSet is a list of grant patterns.
type grantSet []string

// allows reports whether any pattern of g covers stream.
func (g grantSet) allows(stream string) bool {
	for _, p := range g {
		if matchPattern(p, stream) {
			return true
		}
	}
	return false
}
