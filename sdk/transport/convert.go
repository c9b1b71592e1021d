package transport

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// chunkSize bounds each body chunk and so the memory one stream holds in flight.
const chunkSize = 32 << 10

func headerToPB(h http.Header) map[string]*pb.Values {
	out := make(map[string]*pb.Values, len(h))
	for k, v := range h {
		out[k] = &pb.Values{Values: v}
	}
	return out
}

func headerFromPB(m map[string]*pb.Values) http.Header {
	h := make(http.Header, len(m))
	for k, v := range m {
		h[k] = v.GetValues()
	}
	return h
}

func callerToPB(c Caller) *pb.Caller {
	return &pb.Caller{User: c.User, Plugin: c.Plugin, RemoteAddr: c.RemoteAddr, Admin: c.Admin}
}

func callerFromPB(c *pb.Caller) Caller {
	return Caller{User: c.GetUser(), Plugin: c.GetPlugin(), RemoteAddr: c.GetRemoteAddr(), Admin: c.GetAdmin()}
}

func messageToPB(m Message) *pb.WebSocketFrame {
	switch m.Kind {
	case Text, Binary:
		return &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Data{Data: &pb.WebSocketData{Binary: m.Kind == Binary, Payload: m.Data}}}
	case Close:
		return &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Close{Close: &pb.WebSocketClose{Code: int32(m.Code), Reason: m.Reason}}}
	case Ping:
		return &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Ping{Ping: m.Data}}
	case Pong:
		return &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Pong{Pong: m.Data}}
	case Accept:
		return &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Accept{Accept: true}}
	case Reject:
		return &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Reject{Reject: &pb.WebSocketReject{Status: int32(m.Code), Reason: m.Reason}}}
	}
	return nil
}

func messageFromPB(f *pb.WebSocketFrame) (Message, bool) {
	switch x := f.GetFrame().(type) {
	case *pb.WebSocketFrame_Data:
		k := Text
		if x.Data.GetBinary() {
			k = Binary
		}
		return Message{Kind: k, Data: x.Data.GetPayload()}, true
	case *pb.WebSocketFrame_Close:
		return Message{Kind: Close, Code: int(x.Close.GetCode()), Reason: x.Close.GetReason()}, true
	case *pb.WebSocketFrame_Ping:
		return Message{Kind: Ping, Data: x.Ping}, true
	case *pb.WebSocketFrame_Pong:
		return Message{Kind: Pong, Data: x.Pong}, true
	case *pb.WebSocketFrame_Accept:
		return Message{Kind: Accept}, true
	case *pb.WebSocketFrame_Reject:
		return Message{Kind: Reject, Code: int(x.Reject.GetStatus()), Reason: x.Reject.GetReason()}, true
	}
	return Message{}, false
}

// grpcCode picks the gRPC status code an OpError code travels as.
func grpcCode(code string) codes.Code {
	switch code {
	case CodeUnknownOperation, CodeUnknownModule:
		return codes.NotFound
	case CodeModuleDisabled, CodeLocked:
		return codes.FailedPrecondition
	case CodeModuleDown:
		return codes.Unavailable
	case CodeInvalidInput:
		return codes.InvalidArgument
	case CodeForbidden:
		return codes.PermissionDenied
	}
	return codes.Unknown
}

// toStatus turns an error from a Module or HostService into a gRPC status error,
// keeping an *OpError's code in the status details.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnimplemented) {
		return status.Error(codes.Unimplemented, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	var op *OpError
	if !errors.As(err, &op) {
		op = &OpError{Code: CodeInternal, Message: err.Error()}
	}
	st := status.New(grpcCode(op.Code), op.Message)
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: op.Code, Domain: "fiberkit"}); derr == nil {
		st = d
	}
	return st.Err()
}

// fromStatus turns a gRPC error back into ErrUnimplemented, a context error or an *OpError.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unimplemented:
		return ErrUnimplemented
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "fiberkit" {
			return &OpError{Code: info.GetReason(), Message: st.Message()}
		}
	}
	if st.Code() == codes.Unavailable {
		return &OpError{Code: CodeModuleDown, Message: st.Message()}
	}
	return &OpError{Code: CodeInternal, Message: st.Message()}
}
