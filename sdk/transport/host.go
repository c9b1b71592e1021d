package transport

import (
	"context"
	"encoding/json"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// Settings is a module's settings as the host serves them: effective values, secrets
// as their hash, with the revision they belong to.
type Settings struct {
	Revision int64
	Values   map[string]string
}

// HostService is what the host offers one module. The host creates one per module,
// so it always knows who is calling.
type HostService interface {
	GetSettings(ctx context.Context) (Settings, error)
	SetSettings(ctx context.Context, values map[string]string) error
	CallPlugin(ctx context.Context, target, operation string, payload []byte) ([]byte, error)
	// CallPluginStream runs another module's streaming operation, sending each of
	// its values to sink as it comes (Accept once the target accepted the call).
	CallPluginStream(ctx context.Context, target, operation string, payload []byte, sink StreamSink) error
	Publish(ctx context.Context, route string, m Message) (int, error)
	Audit(ctx context.Context, action, actor string, detail map[string]any) error
}

// hostServer adapts a HostService to the gRPC Host service.
type hostServer struct {
	pb.UnimplementedHostServer
	svc HostService
}

func (h *hostServer) GetSettings(ctx context.Context, _ *pb.GetSettingsRequest) (*pb.GetSettingsResponse, error) {
	s, err := h.svc.GetSettings(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetSettingsResponse{Revision: s.Revision, Settings: s.Values}, nil
}

func (h *hostServer) SetSettings(ctx context.Context, r *pb.SetSettingsRequest) (*pb.SetSettingsResponse, error) {
	if err := h.svc.SetSettings(ctx, r.GetSettings()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.SetSettingsResponse{}, nil
}

func (h *hostServer) CallPlugin(ctx context.Context, r *pb.CallPluginRequest) (*pb.CallResponse, error) {
	out, err := h.svc.CallPlugin(ctx, r.GetTarget(), r.GetOperation(), r.GetPayload())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CallResponse{Payload: out}, nil
}

func (h *hostServer) Publish(ctx context.Context, r *pb.PublishRequest) (*pb.PublishResponse, error) {
	kind := Text
	if r.GetData().GetBinary() {
		kind = Binary
	}
	n, err := h.svc.Publish(ctx, r.GetRoute(), Message{Kind: kind, Data: r.GetData().GetPayload()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PublishResponse{Delivered: int32(n)}, nil
}

func (h *hostServer) Audit(ctx context.Context, r *pb.AuditRequest) (*pb.AuditResponse, error) {
	var detail map[string]any
	if len(r.GetDetail()) > 0 {
		if err := json.Unmarshal(r.GetDetail(), &detail); err != nil {
			return nil, toStatus(Errorf(CodeInvalidInput, "audit detail is not a JSON object: %v", err))
		}
	}
	if err := h.svc.Audit(ctx, r.GetAction(), r.GetActor(), detail); err != nil {
		return nil, toStatus(err)
	}
	return &pb.AuditResponse{}, nil
}

// HostClient is a module's handle on the host service: HostService seen from the
// module (CallPluginStream returns the stream rather than taking a sink).
type HostClient struct {
	rpc pb.HostClient
}

// GetSettings returns the module's current settings.
func (c *HostClient) GetSettings(ctx context.Context) (Settings, error) {
	r, err := c.rpc.GetSettings(ctx, &pb.GetSettingsRequest{})
	if err != nil {
		return Settings{}, fromStatus(err)
	}
	return Settings{Revision: r.GetRevision(), Values: r.GetSettings()}, nil
}

// SetSettings changes some of the module's settings (secrets given in plain text are
// hashed by the host).
func (c *HostClient) SetSettings(ctx context.Context, values map[string]string) error {
	_, err := c.rpc.SetSettings(ctx, &pb.SetSettingsRequest{Settings: values})
	return fromStatus(err)
}

// CallPlugin calls another module's operation; the host stamps this module as caller.
func (c *HostClient) CallPlugin(ctx context.Context, target, operation string, payload []byte) ([]byte, error) {
	r, err := c.rpc.CallPlugin(ctx, &pb.CallPluginRequest{Target: target, Operation: operation, Payload: payload})
	if err != nil {
		return nil, fromStatus(err)
	}
	return r.GetPayload(), nil
}

// Publish sends m to this module's open WebSocket connections on route ("" = all).
func (c *HostClient) Publish(ctx context.Context, route string, m Message) (int, error) {
	r, err := c.rpc.Publish(ctx, &pb.PublishRequest{Route: route, Data: &pb.WebSocketData{Binary: m.Kind == Binary, Payload: m.Data}})
	if err != nil {
		return 0, fromStatus(err)
	}
	return int(r.GetDelivered()), nil
}

// Audit records an entry in the host's audit log.
func (c *HostClient) Audit(ctx context.Context, action, actor string, detail map[string]any) error {
	raw, err := json.Marshal(detail)
	if err != nil {
		return Errorf(CodeInvalidInput, "audit detail: %v", err)
	}
	_, err = c.rpc.Audit(ctx, &pb.AuditRequest{Action: action, Actor: actor, Detail: raw})
	return fromStatus(err)
}
