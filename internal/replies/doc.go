// Package replies classifies Redis error replies for the packages that
// decide what to do with one (coherence's subscription loops, remote's
// durability check): an answer that will not change, or one that says
// "later".
package replies
