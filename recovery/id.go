package recovery

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// crockford is Crockford's base32 alphabet: ids sort as strings in time order.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// IDs makes unique, time-sortable ids: 48 bits of Unix milliseconds then 80 bits
// that start random each millisecond and count up within it (a ULID), so two ids
// made in the same millisecond still differ and still sort in creation order.
type IDs struct {
	mu   sync.Mutex
	last int64
	hi   uint16
	lo   uint64
}

// New returns a 26-character id for time t.
func (g *IDs) New(t time.Time) string {
	ms := t.UnixMilli()
	g.mu.Lock()
	if ms <= g.last {
		// Same (or an earlier, clock stepped back) millisecond: count up so the id
		// stays unique and sorts after the previous one.
		ms = g.last
		g.lo++
		if g.lo == 0 {
			g.hi++
		}
	} else {
		var b [10]byte
		_, _ = rand.Read(b[:])                     // never fails on Linux (Go 1.24+: it panics instead)
		g.hi = binary.BigEndian.Uint16(b[:2]) >> 1 // keep headroom so counting never wraps hi
		g.lo = binary.BigEndian.Uint64(b[2:])
		g.last = ms
	}
	hi, lo := g.hi, g.lo
	g.mu.Unlock()

	var raw [16]byte
	raw[0] = byte(ms >> 40)
	raw[1] = byte(ms >> 32)
	raw[2] = byte(ms >> 24)
	raw[3] = byte(ms >> 16)
	raw[4] = byte(ms >> 8)
	raw[5] = byte(ms)
	binary.BigEndian.PutUint16(raw[6:8], hi)
	binary.BigEndian.PutUint64(raw[8:], lo)
	return encode(raw)
}

// encode writes 128 bits as 26 base32 characters (the first carries 3 bits).
func encode(raw [16]byte) string {
	var out [26]byte
	hi := binary.BigEndian.Uint64(raw[:8])
	lo := binary.BigEndian.Uint64(raw[8:])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
