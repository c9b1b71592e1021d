package transport

import (
	"context"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// MetricsModule is a Module that reports its own Prometheus metrics. It is optional:
// for a Module without it the Metrics call answers Unimplemented, as a plugin built
// before the call existed does, and the host scrapes nothing from it.
type MetricsModule interface {
	Module
	// Metrics gathers the module's metric families, without the module label (the
	// host adds it).
	Metrics(ctx context.Context) ([]*dto.MetricFamily, error)
}

func (s *server) Metrics(ctx context.Context, _ *pb.MetricsRequest) (*pb.MetricsResponse, error) {
	mm, ok := s.impl.(MetricsModule)
	if !ok {
		return nil, toStatus(ErrUnimplemented)
	}
	fams, err := mm.Metrics(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.MetricsResponse{Families: make([][]byte, 0, len(fams))}
	for _, f := range fams {
		b, err := proto.Marshal(f)
		if err != nil {
			return nil, toStatus(Errorf(CodeInternal, "encode metric family %s: %v", f.GetName(), err))
		}
		out.Families = append(out.Families, b)
	}
	return out, nil
}

// Metrics gathers the module's own metric families. A module that reports none
// (an older plugin, or one that is not a MetricsModule) returns ErrUnimplemented.
func (c *Client) Metrics(ctx context.Context) ([]*dto.MetricFamily, error) {
	r, err := c.rpc.Metrics(ctx, &pb.MetricsRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	fams := make([]*dto.MetricFamily, 0, len(r.GetFamilies()))
	for i, b := range r.GetFamilies() {
		f := &dto.MetricFamily{}
		if err := proto.Unmarshal(b, f); err != nil {
			return nil, fmt.Errorf("decode metric family %d: %w", i, err)
		}
		fams = append(fams, f)
	}
	return fams, nil
}
