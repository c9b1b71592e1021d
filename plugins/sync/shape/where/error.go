package where

import "fmt"

// Error is a where clause that cannot be compiled: a syntax error, an unknown
// column, a missing parameter, a construct that is not supported, or a constant
// that is not a valid value of the type it is compared with.
type Error struct {
	Pos int    // byte offset into the expression, -1 if unknown
	Msg string // what is wrong, in words a user can act on
}

// Error returns the message, with the position when it is known.
func (e *Error) Error() string {
	if e.Pos < 0 {
		return "where: " + e.Msg
	}
	return fmt.Sprintf("where: %s (at byte %d)", e.Msg, e.Pos)
}

func errorf(pos int, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}
