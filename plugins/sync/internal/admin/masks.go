package admin

import (
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// maskRules writes a connection's masking rules in their text form, one per line,
// for its page's form (mask.Parse reads them back).
func maskRules(rules []syncapi.MaskRule) string { return mask.Set(rules).String() }
