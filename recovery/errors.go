package recovery

import (
	"errors"
	"fmt"
)

// Code classifies an error for the edges: HTTP turns it into a status, Slack
// into an ephemeral sentence.
type Code string

// Codes.
const (
	CodeInvalid     Code = "invalid"      // the input can never work (400/422)
	CodeNotFound    Code = "not_found"    // 404
	CodeConflict    Code = "conflict"     // the execution is not in a state that allows it (409)
	CodeForbidden   Code = "forbidden"    // 403
	CodeUnavailable Code = "unavailable"  // worth retrying later (503)
	CodeUnknownType Code = "unknown_type" // an event type we don't know (422)
)

// Error is an error with a code and a sentence for people; Err is the cause for logs.
type Error struct {
	Code Code
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrorCode returns err's code: the Code of an *Error in its chain, CodeNotFound
// for ErrNotFound, CodeConflict for a *MoveError, else "".
func ErrorCode(err error) Code {
	var e *Error
	var m *MoveError
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.As(err, &m):
		return CodeConflict
	}
	return ""
}

// ErrorMessage returns the sentence for people: an *Error's Msg, a MoveError's
// text, or a generic line (the details go to the log, not to the user).
func ErrorMessage(err error) string {
	var e *Error
	var m *MoveError
	switch {
	case errors.As(err, &e):
		return e.Msg
	case errors.As(err, &m):
		return m.Error()
	case errors.Is(err, ErrNotFound):
		return "not found"
	}
	return "internal error (see the bot's log)"
}
