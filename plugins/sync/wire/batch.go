package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Batch frame layout (binary WebSocket message, big-endian):
//
//	offset size field
//	0      4    magic "FKB1"
//	4      1    flags (bit 0: payload is zstd-compressed; bit 1: payload is COPY
//	            binary tuples, without the format's header and trailer)
//	5      3    reserved, zero
//	8      4    stream id
//	12     4    sequence number (1, 2, …)
//	16     4    rows in the batch
//	20     4    raw (uncompressed) payload length
//	24     4    CRC-32C of the raw payload
//	28     2    length K of the last-key field
//	30     K    last key: JSON array of strings
//	30+K   …    payload: COPY text rows or binary tuples (compressed when flagged)
const (
	headerSize = 30
	flagZstd   = 1
	flagBinary = 2
	// MaxBatchBytes bounds a batch's raw payload.
	MaxBatchBytes = 64 << 20
	maxKeyBytes   = 16 << 10
)

// BatchStream returns the stream id of a batch frame without decoding it, so a
// reader can route the frame to its stream (where DecodeBatch judges the rest); ok
// is false for a frame too short to hold a stream id.
func BatchStream(frame []byte) (stream uint32, ok bool) {
	if len(frame) < 12 {
		return 0, false
	}
	return binary.BigEndian.Uint32(frame[8:12]), true
}

var magic = [4]byte{'F', 'K', 'B', '1'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch is one decoded batch frame.
type Batch struct {
	Stream  uint32
	Seq     uint32
	Rows    uint32
	LastKey []string
	// Binary is set when Data holds COPY binary tuples (no header or trailer)
	// rather than COPY text lines.
	Binary bool
	// Data is the rows, verified against its checksum.
	Data []byte
}

// Codec encodes and decodes batch frames; it holds the zstd coders, which are
// expensive to create, and creates each the first time a batch needs it. Not safe
// for concurrent use.
type Codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// NewCodec returns a Codec.
func NewCodec() *Codec { return &Codec{} }

// Close releases the coders.
func (c *Codec) Close() {
	if c.enc != nil {
		c.enc.Close()
	}
	if c.dec != nil {
		c.dec.Close()
	}
}

func (c *Codec) encoder() *zstd.Encoder {
	if c.enc == nil {
		c.enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	}
	return c.enc
}

func (c *Codec) decoder() *zstd.Decoder {
	if c.dec == nil {
		c.dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxBatchBytes))
	}
	return c.dec
}

// EncodeBatch appends b as a frame to dst, compressing the payload when compress is set.
func (c *Codec) EncodeBatch(dst []byte, b Batch, compress bool) ([]byte, error) {
	if len(b.Data) > MaxBatchBytes {
		return nil, fmt.Errorf("batch of %d bytes exceeds %d", len(b.Data), MaxBatchBytes)
	}
	key, err := json.Marshal(b.LastKey)
	if err != nil {
		return nil, err
	}
	if len(key) > maxKeyBytes {
		return nil, fmt.Errorf("last key of %d bytes exceeds %d", len(key), maxKeyBytes)
	}
	var h [headerSize]byte
	copy(h[0:4], magic[:])
	if compress {
		h[4] = flagZstd
	}
	if b.Binary {
		h[4] |= flagBinary
	}
	binary.BigEndian.PutUint32(h[8:], b.Stream)
	binary.BigEndian.PutUint32(h[12:], b.Seq)
	binary.BigEndian.PutUint32(h[16:], b.Rows)
	binary.BigEndian.PutUint32(h[20:], uint32(len(b.Data)))
	binary.BigEndian.PutUint32(h[24:], crc32.Checksum(b.Data, castagnoli))
	binary.BigEndian.PutUint16(h[28:], uint16(len(key)))
	dst = append(dst, h[:]...)
	dst = append(dst, key...)
	if compress {
		return c.encoder().EncodeAll(b.Data, dst), nil
	}
	return append(dst, b.Data...), nil
}

// DecodeBatch parses and verifies a batch frame.
func (c *Codec) DecodeBatch(frame []byte) (Batch, error) {
	if len(frame) < headerSize {
		return Batch{}, malformed("batch frame of %d bytes is shorter than its header", len(frame))
	}
	if [4]byte(frame[0:4]) != magic {
		return Batch{}, malformed("batch frame has a bad magic number")
	}
	flags := frame[4]
	if flags&^(flagZstd|flagBinary) != 0 || frame[5] != 0 || frame[6] != 0 || frame[7] != 0 {
		return Batch{}, malformed("batch frame has unknown flags")
	}
	b := Batch{
		Stream: binary.BigEndian.Uint32(frame[8:]),
		Seq:    binary.BigEndian.Uint32(frame[12:]),
		Rows:   binary.BigEndian.Uint32(frame[16:]),
		Binary: flags&flagBinary != 0,
	}
	rawLen := binary.BigEndian.Uint32(frame[20:])
	sum := binary.BigEndian.Uint32(frame[24:])
	keyLen := int(binary.BigEndian.Uint16(frame[28:]))
	if rawLen > MaxBatchBytes {
		return Batch{}, &FrameError{Code: ErrFrameTooLarge, Reason: fmt.Sprintf("batch declares %d bytes (max %d)", rawLen, MaxBatchBytes)}
	}
	if keyLen > maxKeyBytes || headerSize+keyLen > len(frame) {
		return Batch{}, malformed("batch last-key length %d runs past the frame", keyLen)
	}
	if keyLen > 0 {
		if err := json.Unmarshal(frame[headerSize:headerSize+keyLen], &b.LastKey); err != nil {
			return Batch{}, malformed("batch last key: %v", err)
		}
	}
	body := frame[headerSize+keyLen:]
	if flags&flagZstd != 0 {
		// Decode at most rawLen+1 bytes: more than declared is refused, not inflated.
		r, err := c.decodeLimited(body, int(rawLen))
		if err != nil {
			return Batch{}, err
		}
		b.Data = r
	} else {
		b.Data = body
	}
	if uint32(len(b.Data)) != rawLen {
		return Batch{}, malformed("batch payload is %d bytes, header says %d", len(b.Data), rawLen)
	}
	if crc32.Checksum(b.Data, castagnoli) != sum {
		return Batch{}, malformed("batch checksum mismatch")
	}
	return b, nil
}

func (c *Codec) decodeLimited(body []byte, rawLen int) ([]byte, error) {
	dec := c.decoder()
	if err := dec.Reset(newReader(body)); err != nil {
		return nil, malformed("batch payload: %v", err)
	}
	out := make([]byte, 0, rawLen)
	buf := make([]byte, 32<<10)
	for {
		n, err := dec.Read(buf)
		out = append(out, buf[:n]...)
		if len(out) > rawLen {
			return nil, malformed("batch payload inflates past its declared %d bytes", rawLen)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, malformed("batch payload: %v", err)
		}
	}
}

type sliceReader struct {
	b []byte
}

func newReader(b []byte) *sliceReader { return &sliceReader{b: b} }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
