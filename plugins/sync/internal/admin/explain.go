package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/urlguard"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// explain turns a failure into the code and sentence the Receive page shows;
// wasWaiting says the receiver was waiting for an approval.
func explain(err error, wasWaiting bool) (code, msg string) {
	var re *client.RemoteError
	var he *client.HTTPError
	switch {
	case errors.As(err, &re):
		return explainRefusal(re, wasWaiting)
	case errors.Is(err, client.ErrClosed):
		return "sender_vanished", "The sending site went away. Rows already imported are kept; start again with a new code to finish."
	case errors.Is(err, context.Canceled):
		return "cancelled", "Cancelled."
	case urlguard.Refused(err):
		return syncapi.CodeRefusedURL, err.Error()
	case errors.As(err, &he) && he.Status == http.StatusNotFound:
		return "sender_disabled", "The sending site has Sync turned off, or the URL is wrong."
	}
	return "failed", err.Error()
}

// explainRefusal explains a sender's refusal (or the reason it closed with).
func explainRefusal(re *client.RemoteError, wasWaiting bool) (code, msg string) {
	switch re.Code {
	case wire.ErrInvalidCode:
		return re.Code, "That code is not valid, or it has expired (the sending page was closed)."
	case wire.ErrAlreadyUsed:
		return re.Code, "That code was already used. Ask the sending site for a new one."
	case wire.ErrPasswordRequired:
		return re.Code, "The sending site asks for a password."
	case wire.ErrWrongPassword:
		return re.Code, "Wrong password."
	case wire.ErrRateLimited:
		return re.Code, "Too many failed attempts from this address. Try again later."
	case wire.ErrApprovalTimeout:
		return re.Code, "Nobody on the sending site approved the request in time."
	case wire.ErrDenied:
		if wasWaiting {
			return "approval_denied", "An admin of the sending site denied the request."
		}
		return re.Code, "The sending site does not accept incoming connections."
	}
	if code, msg, ok := closeReason(re.Code); ok {
		return code, msg
	}
	return re.Code, "The sending site refused: " + re.Error()
}

// closeReason explains the reasons a sender gives when it closes a connection
// (close codes 4004, 4005; the client reports the reason as the error's code).
// The reasons are free text (a connection's refusal detail), so they are matched
// by their words.
func closeReason(reason string) (code, msg string, ok bool) {
	r := strings.ToLower(reason)
	switch {
	case strings.Contains(r, "session ended"):
		return "session_ended", "The sending site ended the session: its Send page was closed or the code was withdrawn. Rows already imported are kept; ask for a new code to finish.", true
	case strings.Contains(r, "revoked"), strings.Contains(r, "was deleted"):
		return "connection_revoked", "The sending site revoked this connection. Rows already imported are kept; ask the sending site for a new connection.", true
	case strings.Contains(r, "suspended"):
		return "connection_suspended", "The sending site suspended this connection. Ask its admin to reactivate it.", true
	case strings.Contains(r, "regenerated"):
		return "token_regenerated", "The sending site issued a new token for this connection; the old one no longer works.", true
	case strings.HasPrefix(r, "expired"):
		return "connection_expired", "This connection expired on the sending site (" + reason + "). Ask its admin to extend it.", true
	case strings.Contains(r, "downloads used"), strings.Contains(r, "requests this minute"), strings.Contains(r, "utc hours"):
		return "connection_limit", "The sending site's limits for this connection stopped it: " + reason + ".", true
	}
	return "", "", false
}
