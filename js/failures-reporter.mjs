// node --test reporter: each failure in full, then one summary line; passing tests print nothing.
import { inspect } from 'node:util';

export default async function* failuresOnly(source) {
  for await (const event of source) {
    if (event.type === 'test:fail' && event.data.details?.type !== 'suite') {
      const where = event.data.file ? ` (${event.data.file}:${event.data.line})` : '';
      yield `✖ ${event.data.name}${where}\n${inspect(event.data.details.error, { depth: 4 })}\n\n`;
    } else if (event.type === 'test:diagnostic' && /^(tests|pass|fail) \d+$/.test(event.data.message)) {
      yield `${event.data.message}\n`;
    }
  }
}
