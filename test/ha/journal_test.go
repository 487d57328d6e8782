package ha

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// call is one driver call as a replica's log-driver journal recorded it
// (recovery/logdriver: one JSON line per call, written before it returns).
type call struct {
	Replica   string    `json:"-"` // whose journal
	Line      int       `json:"-"` // 1-based, for messages
	Op        string    `json:"op"`
	Execution string    `json:"execution"`
	Action    int       `json:"action"`
	Type      string    `json:"type"`
	Target    string    `json:"target"`
	At        time.Time `json:"at"`
	Term      int64     `json:"term"`
}

func (c call) String() string {
	return fmt.Sprintf("%s:%d %s of %s action %d (%s %s) at %s under term %d",
		c.Replica, c.Line, c.Op, c.Execution, c.Action, c.Type, c.Target, c.At.Format(time.RFC3339Nano), c.Term)
}

// readJournal parses a replica's journal. A torn last line (a kill -9 mid-
// write) is not a call: the call had not returned. Any other bad line is an
// error naming it.
func readJournal(r io.Reader, replica string) ([]call, error) {
	var out []call
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var pending error
	for n := 1; sc.Scan(); n++ {
		if pending != nil {
			return nil, pending
		}
		var c call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil || c.Execution == "" || (c.Op != "apply" && c.Op != "undo") {
			pending = fmt.Errorf("journal %s line %d: bad call %q (%v)", replica, n, sc.Bytes(), err)
			continue
		}
		c.Replica, c.Line = replica, n
		out = append(out, c)
	}
	return out, sc.Err()
}

func readJournalFile(path, replica string) ([]call, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	return readJournal(f, replica)
}

type callKey struct {
	execution string
	action    int
	op        string
}

// repeatedCalls finds every (execution, action, op) made more than once,
// across all replicas' journals: each is a driver call done twice.
func repeatedCalls(calls []call) []string {
	seen := map[callKey]call{}
	var out []string
	for _, c := range calls {
		k := callKey{c.Execution, c.Action, c.Op}
		if first, ok := seen[k]; ok {
			out = append(out, fmt.Sprintf("repeated: %s, already %s", c, first))
			continue
		}
		seen[k] = c
	}
	return out
}

// unpairedUndos finds undos with no apply of the same action in any journal.
func unpairedUndos(calls []call) []string {
	applied := map[callKey]bool{}
	for _, c := range calls {
		if c.Op == "apply" {
			applied[callKey{c.Execution, c.Action, "apply"}] = true
		}
	}
	var out []string
	for _, c := range calls {
		if c.Op == "undo" && !applied[callKey{c.Execution, c.Action, "apply"}] {
			out = append(out, fmt.Sprintf("undo without an apply: %s", c))
		}
	}
	return out
}

// lateCalls finds calls made by a replica after it lost leadership. lostBy[T]
// is a time by which term T had surely ended (the election key was seen gone:
// etcd deleted it, its lease had expired or was revoked); a term missing
// from lostBy had not ended when the test last looked. A call must carry a
// term (0: made under no election at all), and the calls of an older term
// never come after the first call of a newer one: leaders act one after the
// other.
func lateCalls(calls []call, lostBy map[int64]time.Time) []string {
	var out []string
	first := map[int64]time.Time{}
	for _, c := range calls {
		if c.Term == 0 {
			out = append(out, fmt.Sprintf("call under no leadership term: %s", c))
			continue
		}
		if lost, ok := lostBy[c.Term]; ok && c.At.After(lost) {
			out = append(out, fmt.Sprintf("call after its term ended (by %s): %s", lost.Format(time.RFC3339Nano), c))
		}
		if f, ok := first[c.Term]; !ok || c.At.Before(f) {
			first[c.Term] = c.At
		}
	}
	for _, c := range calls {
		for t, f := range first {
			if t > c.Term && c.At.After(f) {
				out = append(out, fmt.Sprintf("call after term %d had begun acting (at %s): %s", t, f.Format(time.RFC3339Nano), c))
				break
			}
		}
	}
	return out
}

// electionKey is one candidate's key in the leader election: created at
// Term (its create revision), deleted at Deleted (0: still there).
type electionKey struct {
	Term, Deleted int64
}

// span is a leadership term in store revisions: its leader held it from
// From (inclusive) to To (exclusive; 0: still holds it).
type span struct {
	Term, From, To int64
}

// leaderships turns candidates' keys into leadership spans. As in etcd's
// election recipe, the leader is the live key with the lowest create
// revision: a key leads from the later of its creation and the deletion of
// every older key, until it is deleted. A key deleted while an older one
// lived never led.
func leaderships(keys []electionKey) []span {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b electionKey) int { return cmp.Compare(a.Term, b.Term) })
	var out []span
	var olderGone int64 // the latest deletion among older keys
	olderLive := false
	for _, k := range keys {
		from := max(k.Term, olderGone)
		if !olderLive && (k.Deleted == 0 || k.Deleted > from) {
			out = append(out, span{Term: k.Term, From: from, To: k.Deleted})
		}
		if k.Deleted == 0 {
			olderLive = true
		} else {
			olderGone = max(olderGone, k.Deleted)
		}
	}
	return out
}

// write is one store write transaction: its revision, and which process
// made it. The etcd store writes its seq key in every transaction, with a
// batch id whose epoch is unique to the process; a process leads at most once
// (lost leadership ends it), so a writer is one leadership.
type write struct {
	Rev    int64
	Writer string
}

// interleavedWrites checks that the writes of different leaders never
// interleave: in revision order each writer's writes form one run, and all of
// them fall within one leadership span.
func interleavedWrites(writes []write, spans []span) []string {
	writes = slices.Clone(writes)
	slices.SortFunc(writes, func(a, b write) int { return cmp.Compare(a.Rev, b.Rev) })
	spanOf := func(rev int64) (span, bool) {
		for _, s := range spans {
			if rev >= s.From && (s.To == 0 || rev < s.To) {
				return s, true
			}
		}
		return span{}, false
	}
	var out []string
	done := map[string]int64{} // writers whose run ended → their last revision
	term := map[string]int64{} // writer → the term its first write fell in
	var cur write
	for _, w := range writes {
		if w.Writer != cur.Writer {
			if cur.Writer != "" {
				done[cur.Writer] = cur.Rev
			}
			if last, ok := done[w.Writer]; ok {
				out = append(out, fmt.Sprintf("write at revision %d by %s, whose writes had stopped at revision %d, after %s's", w.Rev, w.Writer, last, cur.Writer))
			}
		}
		cur = w
		s, ok := spanOf(w.Rev)
		if !ok {
			out = append(out, fmt.Sprintf("write at revision %d by %s while nobody led", w.Rev, w.Writer))
			continue
		}
		if t, seen := term[w.Writer]; !seen {
			term[w.Writer] = s.Term
		} else if t != s.Term {
			out = append(out, fmt.Sprintf("write at revision %d by %s under term %d, its first under term %d", w.Rev, w.Writer, s.Term, t))
		}
	}
	return out
}

// actionKey names one action of one execution.
type actionKey struct {
	execution string
	action    int
}

// undoTally checks the time-boxed actions: every action the store recorded
// as applied with a state to restore (mustRevert) was undone exactly once in
// the journals, and every undo belongs to one of them. An action of an
// execution one of whose undos the store saw start with no outcome (unsure:
// its leader died, or its lease ran out, around the call) may have been
// undone once or not at all: nobody can know, and recoverbot undoes nothing
// more of it (its execution says so, for a person to check); it is counted
// as held when no journal has it.
func undoTally(calls []call, mustRevert, unsure map[actionKey]bool) (reverted, held int, problems []string) {
	undos := map[actionKey][]call{}
	for _, c := range calls {
		if c.Op == "undo" {
			k := actionKey{c.Execution, c.Action}
			undos[k] = append(undos[k], c)
		}
	}
	for k := range mustRevert {
		switch n := len(undos[k]); {
		case n == 1:
			reverted++
		case n == 0 && unsure[k]:
			held++
		default:
			problems = append(problems, fmt.Sprintf("time-boxed action %d of %s undone %d times, want once", k.action, k.execution, n))
		}
	}
	for k, us := range undos {
		if !mustRevert[k] {
			problems = append(problems, fmt.Sprintf("undo of an action that was not to be reverted: %s", us[0]))
		}
	}
	slices.Sort(problems)
	return reverted, held, problems
}
