// The audible cue of an SOS: three short tones from WebAudio (no sound file to
// download). Browsers start audio only after a user gesture, so the context is
// created or resumed on the first click or tap (signing in is one).
let context = null;

export function unlockAudio() {
  try {
    context ??= new AudioContext();
    if (context.state === "suspended") context.resume();
  } catch {
    context = null; // no WebAudio: the visual cue remains
  }
}

export function audioReady() {
  return context !== null && context.state === "running";
}

/** Plays the alarm tones; false when the browser does not let the page play sound yet. */
export function beep() {
  if (!audioReady()) return false;
  const start = context.currentTime;
  for (let i = 0; i < 3; i++) {
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.type = "square";
    oscillator.frequency.value = i % 2 ? 660 : 880;
    gain.gain.setValueAtTime(0.0001, start + i * 0.25);
    gain.gain.exponentialRampToValueAtTime(0.25, start + i * 0.25 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.25 + 0.2);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(start + i * 0.25);
    oscillator.stop(start + i * 0.25 + 0.22);
  }
  return true;
}
